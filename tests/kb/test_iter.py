"""``prolog_iter``: solutions computed as they are asked for, each step bounded, and no
Prolog resource held by an iterator that was closed, finished, failed or dropped."""

from __future__ import annotations

import gc
import threading

import pytest

import octopus
from octopus import EngineClosed, KnowledgeBaseError
from octopus.kb import Limits


def test_lazy(engine: octopus.Engine) -> None:
    engine.add_facts(":- dynamic(seen/1).")
    with engine.prolog_iter("between(1, inf, X), assertz(seen(X))") as solutions:
        assert next(solutions) == {"X": 1}
        assert next(solutions) == {"X": 2}
        # only two solutions were computed so far
        assert engine.prolog("seen(X)") == [{"X": 1}, {"X": 2}]
    assert engine.kb.open_iterators == 0
    with pytest.raises(StopIteration):
        next(solutions)


def test_batches_and_the_end(engine: octopus.Engine) -> None:
    it = engine.prolog_iter("member(X, [a, b, c, d, e])", batch=2)
    assert engine.kb.open_iterators == 1
    assert [s["X"] for s in it] == ["a", "b", "c", "d", "e"]
    assert engine.kb.open_iterators == 0          # finishing frees the engine
    assert list(engine.prolog_iter("fail")) == []
    assert list(engine.prolog_iter("X = 1", batch=10)) == [{"X": 1}]
    assert engine.kb.open_iterators == 0


def test_bindings_and_checks(engine: octopus.Engine) -> None:
    engine.add_facts("p(1). p(2). p(3).")
    assert list(engine.prolog_iter("p(X), X >= Min", Min=2)) == [{"X": 2}, {"X": 3}]
    with pytest.raises(KnowledgeBaseError, match="shell"):
        engine.prolog_iter("p(X), shell(ls)")
    with pytest.raises(KnowledgeBaseError, match="syntax"):
        engine.prolog_iter("p(")
    assert engine.kb.open_iterators == 0


def test_each_step_is_bounded(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(inferences=100_000)
    it = engine.prolog_iter("member(X, [1, 2]) ; repeat, fail")
    assert next(it) == {"X": 1}
    assert next(it) == {"X": 2}
    with pytest.raises(KnowledgeBaseError, match="inference limit"):
        next(it)
    assert engine.kb.open_iterators == 0          # an error ends the iterator
    with pytest.raises(StopIteration):
        next(it)
    engine.kb.limits = Limits(inferences=10**15, timeout=0.2)
    it = engine.prolog_iter("between(1, 3, X) ; catch((repeat, fail), _, true)", batch=2)
    assert [next(it), next(it), next(it)] == [{"X": 1}, {"X": 2}, {"X": 3}]
    with pytest.raises(KnowledgeBaseError, match="time limit"):
        next(it)
    # the time between steps does not count: a slow consumer is no runaway goal
    it = engine.prolog_iter("between(1, 3, X)", timeout=0.2)
    assert next(it) == {"X": 1}
    threading.Event().wait(0.4)
    assert next(it) == {"X": 2}
    it.close()


def test_dropped_iterators_are_reclaimed(engine: octopus.Engine) -> None:
    for _ in range(10):
        it = engine.prolog_iter("between(1, inf, X)")
        next(it)
    del it
    gc.collect()
    assert engine.kb.open_iterators == 0


def test_open_iterators_are_limited(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(iterators=3)
    held = [engine.prolog_iter("between(1, inf, X)") for _ in range(3)]
    with pytest.raises(KnowledgeBaseError, match="3 iterators are open"):
        engine.prolog_iter("true")
    held[0].close()
    held[0].close()                                # closing twice is harmless
    extra = engine.prolog_iter("between(1, inf, X)")
    assert next(extra) == {"X": 1}
    assert next(held[1]) == {"X": 1}
    del held, extra
    gc.collect()
    assert list(engine.prolog_iter("X = done")) == [{"X": "done"}]


def test_any_thread_may_step_it(engine: octopus.Engine) -> None:
    it = engine.prolog_iter("between(1, 40, X)")
    got: list[int] = []

    def take(n: int) -> None:
        for _ in range(n):
            got.append(next(it)["X"])

    for _ in range(4):
        t = threading.Thread(target=take, args=(5,))
        t.start()
        t.join(60)
    threads = [threading.Thread(target=take, args=(5,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(1, 41))
    with pytest.raises(StopIteration):
        next(it)


def test_loads_go_on_while_an_iterator_is_open(engine: octopus.Engine) -> None:
    engine.add_facts("q(1). q(2). q(3).")
    it = engine.prolog_iter("q(X)")
    assert next(it) == {"X": 1}
    engine.add_facts("q(4).")                    # no lock is held between steps
    assert [s["X"] for s in it] == [2, 3]        # the logical update view of Prolog
    assert [s["X"] for s in engine.prolog_iter("q(X)")] == [1, 2, 3, 4]


def test_closing_the_engine_ends_its_iterators() -> None:
    engine = octopus.Engine()
    it = engine.prolog_iter("between(1, inf, X)")
    assert next(it) == {"X": 1}
    engine.close()
    with pytest.raises(EngineClosed):
        next(it)
    it.close()
    with pytest.raises(EngineClosed):
        engine.prolog_iter("true")
