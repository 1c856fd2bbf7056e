"""Every knowledge-base call is bounded: time, inferences, stack, solutions, reply size.

No test asserts a duration: a runaway goal runs in a thread joined with a generous
bound, so a missing limit fails the test instead of hanging it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import octopus
from octopus import KnowledgeBaseError
from octopus._prolog import runtime
from octopus.kb import Limits


def bounded(call: Callable[[], Any]) -> BaseException | Any:
    """The result (or exception) of ``call``, which must end within a minute."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call did not end"
    return outcome[0]


RUNAWAYS = [
    "repeat, fail",
    "between(1, inf, X), X < 0",
    "catch((repeat, fail), _, true)",                       # a catch-all cannot swallow it
    "repeat, catch((repeat, fail), _, true), fail",
    "catch_with_backtrace((repeat, fail), _, true)",
    "findall(X, (repeat, X = 1), _)",
    "length(L, N), N < 0",
    "forall(repeat, true)",
]


@pytest.mark.parametrize("goal", RUNAWAYS)
def test_runaway_goals_hit_the_inference_limit(engine: octopus.Engine, goal: str) -> None:
    engine.kb.limits = Limits(inferences=200_000, timeout=600)
    error = bounded(lambda: engine.prolog(goal))
    assert isinstance(error, KnowledgeBaseError) and "inference limit" in str(error), error
    assert engine.prolog("X = 1") == [{"X": 1}]       # the knowledge base still works


@pytest.mark.parametrize("goal", RUNAWAYS)
def test_runaway_goals_hit_the_time_limit(engine: octopus.Engine, goal: str) -> None:
    engine.kb.limits = Limits(inferences=10**15, timeout=0.2)
    error = bounded(lambda: engine.prolog(goal))
    assert isinstance(error, KnowledgeBaseError) and "time limit" in str(error), error
    # a timeout per call overrides the knowledge base's
    error = bounded(lambda: engine.prolog(goal, timeout=0.1))
    assert isinstance(error, KnowledgeBaseError) and "time limit" in str(error), error


def test_time_limit_in_other_threads(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(inferences=10**15, timeout=0.2)
    errors = [bounded(lambda: engine.prolog("repeat, fail")) for _ in range(3)]
    assert all(isinstance(e, KnowledgeBaseError) for e in errors), errors
    results: list[BaseException | Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        bounded(lambda: engine.prolog("repeat, fail")))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 4 and all(isinstance(e, KnowledgeBaseError) for e in results)


def test_stack_limit(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(stack_bytes=16 << 20, inferences=10**12, timeout=600)
    for goal in ("length(L, 100000000)", "numlist(1, 10000000, L)",
                 "length(L, N), N > 10000000"):
        error = bounded(lambda goal=goal: engine.prolog(goal, limit=1))
        assert isinstance(error, KnowledgeBaseError) and "stack limit" in str(error), error
    assert engine.prolog_once("numlist(1, 1000, L), sum_list(L, S)") == \
        {"L": list(range(1, 1001)), "S": 500500}


def test_solution_count(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(solutions=50)
    assert len(engine.prolog("between(1, 50, X)")) == 50
    with pytest.raises(KnowledgeBaseError, match="more than 50 solutions"):
        engine.prolog("between(1, 51, X)")
    with pytest.raises(KnowledgeBaseError, match="more than 50 solutions"):
        engine.prolog("length(L, N)")
    # an explicit limit takes the first ones, however many there are
    assert engine.prolog("between(1, inf, X)", limit=3) == [{"X": 1}, {"X": 2}, {"X": 3}]
    assert len(engine.prolog("between(1, 80, X)", limit=80)) == 80


def test_reply_size(engine: octopus.Engine) -> None:
    engine.kb.limits = Limits(reply_bytes=10_000)
    assert len(engine.prolog("between(1, 100, X)")) == 100
    with pytest.raises(KnowledgeBaseError, match="reply limit of 10,000 bytes"):
        engine.prolog("between(1, 2000, X)")
    with pytest.raises(KnowledgeBaseError, match="reply limit"):
        engine.prolog("length(L, 5000), maplist(=(x), L)")
    with pytest.raises(KnowledgeBaseError, match="reply limit"):
        engine.prolog_once("format(string(S), \"~*c\", [20000, 0'x])")
    with pytest.raises(KnowledgeBaseError, match="reply limit"):
        next(engine.prolog_iter("format(atom(S), \"~*c\", [20000, 0'x])"))


def _thread_stack_limit() -> int:
    return int(runtime().janus.query_once("current_prolog_flag(stack_limit, X)")["X"])


def test_directives_are_bounded(engine: octopus.Engine) -> None:
    stack_limit = _thread_stack_limit()
    engine.kb.limits = Limits(inferences=100_000, timeout=600)
    engine.add_facts("keep(0).")
    error = bounded(lambda: engine.add_facts("keep(1).\n:- repeat, fail."))
    assert isinstance(error, KnowledgeBaseError) and "line 2: the inference limit" in str(error)
    engine.kb.limits = Limits(inferences=10**15, timeout=0.2)
    error = bounded(lambda: engine.add_facts("keep(2).\n:- catch((repeat, fail), _, true)."))
    assert isinstance(error, KnowledgeBaseError) and "time limit" in str(error), error
    engine.kb.limits = Limits(stack_bytes=16 << 20, timeout=600)
    error = bounded(lambda: engine.add_facts(":- length(_, 100000000)."))
    assert isinstance(error, KnowledgeBaseError) and "stack limit" in str(error), error
    assert engine.prolog("keep(X)") == [{"X": 0}]
    # the loading thread's own stack limit is as it was
    assert _thread_stack_limit() == stack_limit


def test_output_goes_nowhere(engine: octopus.Engine, capfd: pytest.CaptureFixture[str]) -> None:
    engine.add_facts(":- format(\"loaded~n\"), writeln(loaded).")
    assert engine.prolog_once("format(\"hello~n\"), writeln(world), X = 1") == {"X": 1}
    out, err = capfd.readouterr()
    assert "hello" not in out + err and "loaded" not in out + err and "world" not in out + err


@pytest.mark.parametrize("limits", [
    {"timeout": 0}, {"timeout": -1}, {"timeout": float("inf")}, {"timeout": float("nan")},
    {"timeout": "5"}, {"timeout": True}, {"inferences": 0}, {"inferences": 1.5},
    {"stack_bytes": 1000}, {"solutions": -1}, {"reply_bytes": None}, {"iterators": 0},
])
def test_bad_limits(limits: dict[str, object]) -> None:
    with pytest.raises(KnowledgeBaseError):
        Limits(**limits)  # type: ignore[arg-type]


def test_bad_call_arguments_change_nothing(engine: octopus.Engine) -> None:
    before = engine.kb.limits
    with pytest.raises(KnowledgeBaseError):
        engine.kb.limits = {"timeout": 1}  # type: ignore[assignment]
    assert engine.kb.limits is before
    for kwargs in ({"timeout": 0}, {"timeout": "1"}, {"timeout": float("inf")}):
        with pytest.raises(KnowledgeBaseError):
            engine.prolog("true", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(KnowledgeBaseError):
            engine.prolog_iter("true", **kwargs)  # type: ignore[arg-type]
    for batch in (0, -1, True, 1.5):
        with pytest.raises(KnowledgeBaseError):
            engine.prolog_iter("true", batch=batch)  # type: ignore[arg-type]
    assert engine.kb.open_iterators == 0
