"""The Engine API (docs/language.md, docs/guarantees.md), one test per rule."""

from __future__ import annotations

import threading

import pytest

import octopus
from octopus import Atom, ConditionFailed, NotFound, ParameterError, QueryError, Record


def test_set_replaces_the_whole_record(engine: octopus.Engine) -> None:
    engine.set("x { a: 1, b: 2 }")
    engine.set("x { c: 3 }")
    assert str(engine.get("x")) == "x { c: 3 }"
    assert not engine.exists("x { a: _ }")


def test_set_returns_the_stored_record_with_its_revision(engine: octopus.Engine) -> None:
    r1 = engine.set("x { a: 1 }")
    r2 = engine.set("y { b: 'two' }")
    assert (r1.revision, r2.revision) == (1, 2)
    assert engine.get("x") == r1 and engine.get("x").revision == 1
    assert engine.revision == 2


def test_revisions_increase_on_every_change_only(engine: octopus.Engine) -> None:
    engine.set("x")
    with pytest.raises(ConditionFailed):
        engine.set("x { a: 1, a == 5 }")
    with pytest.raises(NotFound):
        engine.delete("nothing")
    assert engine.revision == 1
    deleted = engine.delete("x")
    assert deleted.revision == 1          # the deleted record as it was stored
    assert engine.revision == 2


def test_changes_nobody_observed_leave_later_observers_the_stream_intact(
        engine: octopus.Engine) -> None:
    # Without an observer or a trigger a set builds no Change; one added later sees
    # every change from then on, in revision order, with the record as stored.
    engine.set("x { a: 1 }")
    engine.set("%n { a: %d }", "y", 2)
    seen: list[tuple[int, str, str]] = []
    stop = engine.observe(lambda c: seen.append((c.revision, c.op.value, str(c.record))))
    engine.set("x { a: 3 }")
    engine.set("%n { a: %d }", "y", 4, ephemeral=True)
    engine.delete("x")
    stop()
    engine.set("x { a: 5 }")
    assert seen == [(3, "set", "x { a: 3 }"), (4, "set", "y { a: 4 }"),
                    (5, "delete", "x { a: 3 }")]
    fired: list[str] = []
    engine.watch("y", lambda e: fired.append(str(e.record)))
    engine.set("%n { a: %d }", "y", 6)
    engine.flush()
    assert fired == ["y { a: 6 }"]


@pytest.mark.parametrize("bad", ["_ { a: 1 }", "r'^x' { a: 1 }", "x { a: _ }",
                                 "x { a: 1, a: 2 }"])
def test_set_needs_a_plain_name_and_values(engine: octopus.Engine, bad: str) -> None:
    with pytest.raises(QueryError):
        engine.set(bad)
    assert engine.get_names("_") == [] and engine.revision == 0


def test_a_regex_in_a_set_is_a_precondition(engine: octopus.Engine) -> None:
    # As the original's add_object checks every constraint: the regex is a condition on
    # the stored record, never a value to store.
    with pytest.raises(ConditionFailed):
        engine.set("y { s: 'new', s: r'^a' }")          # nothing stored yet
    engine.set("y { s: 'abc' }")
    assert engine.set("y { s: 'new', s: r'^a' }")["s"] == "new"
    with pytest.raises(ConditionFailed):
        engine.set("y { s: 'newer', s: r'^a' }")        # 'new' does not match ^a
    assert engine.get("y")["s"] == "new" and engine.revision == 2


@pytest.mark.parametrize("bad", ["_", "r'x'", "_ { a: 1 }"])
def test_delete_needs_a_plain_name(engine: octopus.Engine, bad: str) -> None:
    engine.set("x { a: 1 }")
    with pytest.raises(QueryError):
        engine.delete(bad)
    assert engine.exists("x")


def test_compare_and_set(engine: octopus.Engine) -> None:
    with pytest.raises(ConditionFailed):               # conditions need a stored record
        engine.set("counter { value: 2, value == 1 }")
    engine.set("counter { value: 1 }")
    assert engine.set("counter { value: 2, value == 1 }")["value"] == 2
    with pytest.raises(ConditionFailed):
        engine.set("counter { value: 3, value == 1 }")
    assert engine.get("counter")["value"] == 2
    engine.set("counter { value: 3, value > 1, value < 3 }")
    assert str(engine.get("counter")) == "counter { value: 3 }"


def test_keys_only_in_conditions_are_not_stored(engine: octopus.Engine) -> None:
    engine.set("x { owner: 'a', v: 1 }")
    engine.set("x { v: 2, owner == 'a' }")
    assert str(engine.get("x")) == "x { v: 2 }"


def test_conditional_delete(engine: octopus.Engine) -> None:
    engine.set("x { a: 1 }")
    with pytest.raises(NotFound):
        engine.delete("x { a: 2 }")
    assert engine.exists("x")
    assert engine.delete("x { a: 1 }") == Record("x", {"a": 1})
    assert not engine.exists("x")


def test_sequential_set(engine: octopus.Engine) -> None:
    names = [engine.set("lock_ { lock: 'l' }", sequential=True).name for _ in range(3)]
    assert names == ["lock_0", "lock_1", "lock_2"]
    engine.delete("lock_2")
    engine.delete("lock_1")
    assert engine.set("lock_ { lock: 'l' }", sequential=True).name == "lock_3"  # never decreases
    assert engine.set("other_", sequential=True).name == "other_0"             # per base name


def test_sequential_set_skips_names_in_use(engine: octopus.Engine) -> None:
    engine.set("job1 { manual: true }")
    assert engine.set("job", sequential=True).name == "job0"
    assert engine.set("job", sequential=True).name == "job2"
    assert engine.get("job1")["manual"] is True


def test_not_found_is_a_key_error(engine: octopus.Engine) -> None:
    with pytest.raises(KeyError):
        engine.get("missing")
    with pytest.raises(NotFound) as info:
        engine.get("missing")
    assert "missing" in str(info.value)


def test_get_all_and_names_of_nothing(engine: octopus.Engine) -> None:
    assert engine.get_names("_") == []
    assert engine.get_all("_") == []
    assert engine.exists("_") is False


def test_parameters_are_typed_values(engine: octopus.Engine) -> None:
    r = engine.set("%s { a: %d, b: %f, c: %s, d: %b, e: %n }", "rec", 7, 2, "x'y", True, "eth0")
    assert str(r) == "rec { a: 7, b: 2.0, c: 'x\\'y', d: true, e: eth0 }"
    assert isinstance(r["e"], Atom) and r["b"] == 2.0 and isinstance(r["b"], float)
    assert engine.get("_ { c: %s }", "x'y") == r
    assert engine.get("%n { a: %d }", "rec", 7) == r


@pytest.mark.parametrize(("query", "params"), [
    ("x { a: %d }", ()),
    ("x { a: %d }", (1, 2)),
    ("x { a: %d }", ("1",)),
    ("x { a: %d }", (True,)),
    ("x { a: %d }", (1.0,)),
    ("x { a: %f }", ("1.0",)),
    ("x { a: %f }", (float("nan"),)),
    ("x { a: %f }", (float("inf"),)),
    ("x { a: %b }", (1,)),
    ("x { a: %s }", (b"bytes",)),
    ("x { a: %s }", ("\udcff",)),
    ("x { a: %n }", ("Not a name",)),
    ("x { a: %n }", ("true",)),
    ("%s", ("two words",)),
    ("%s", ("x } y { z",)),
    ("%n", ("_",)),
    ("%s", (5,)),
])
def test_bad_parameters_are_parameter_errors(engine: octopus.Engine, query: str,
                                             params: tuple[object, ...]) -> None:
    with pytest.raises(ParameterError):
        engine.set(query, *params)
    with pytest.raises(ParameterError):
        engine.get_names(query, *params)
    assert engine.revision == 0


def test_parameters_cannot_change_the_query_structure(engine: octopus.Engine) -> None:
    engine.set("secret { owner: 'root' }")
    engine.set("public { owner: 'me' }")
    sneaky = "me' } _ { owner: _"
    assert engine.get_names("_ { owner: %s }", sneaky) == []
    engine.set("x { note: %s }", "'), halt, ('")
    assert engine.get("x")["note"] == "'), halt, ('"


def test_read() -> None:
    r = Record("serial", {"iref": 42, "rate": 1, "name": Atom("ttyS0"), "ok": True})
    assert octopus.read(r, "%s { iref: %d }") == ("serial", 42)
    assert octopus.read(r, "_ { name: %s, ok: %b, rate: %f }") == ("ttyS0", True, 1.0)
    assert octopus.read("serial { iref: 42 }", "%s { iref: %d }") == ("serial", 42)
    with pytest.raises(NotFound):
        octopus.read(r, "_ { missing: %d }")
    with pytest.raises(ParameterError):
        octopus.read(r, "_ { name: %d }")
    with pytest.raises(QueryError):
        octopus.read(r, "serial { iref: %d }")
    with pytest.raises(QueryError):
        octopus.read(r, "_ { iref: 42 }")


def test_record_equality_follows_the_query_language() -> None:
    assert Record("x", {"a": 1}) == Record("x", {"a": 1.0})
    assert Record("x", {"a": "e"}) == Record("x", {"a": Atom("e")})
    assert Record("x", {"a": True}) != Record("x", {"a": 1})
    assert Record("x", {"a": 1}) != Record("y", {"a": 1})
    assert hash(Record("x", {"a": 1})) == hash(Record("x", {"a": 1.0}))
    assert str(Record("x", {"a": "e"})) != str(Record("x", {"a": Atom("e")}))


def test_record_is_read_only() -> None:
    r = Record("x", {"b": 2, "a": 1})
    assert list(r.attributes) == ["a", "b"] and r["a"] == 1 and len(r) == 2
    with pytest.raises(TypeError):
        r.attributes["a"] = 5  # type: ignore[index]
    with pytest.raises(ValueError):
        Record("Bad")
    with pytest.raises(ValueError):
        Record("x", {"a": float("nan")})


def test_closed_engine_refuses_calls() -> None:
    e = octopus.Engine()
    e.set("x")
    e.close()
    e.close()
    with pytest.raises(octopus.EngineClosed):
        e.get("x")
    with pytest.raises(octopus.EngineClosed):
        e.set("y")


def test_engines_are_independent() -> None:
    with octopus.Engine() as a, octopus.Engine() as b:
        a.set("x { a: 1 }")
        assert not b.exists("x")
        assert b.set("x_", sequential=True).name == "x_0"


def test_set_many(engine: octopus.Engine) -> None:
    seen = []
    n = engine.set_many((f"r{i} {{ i: {i} }}" for i in range(25)), batch=10, progress=seen.append)
    assert n == 25 and seen == [10, 20, 25]
    assert engine.count() == 25 and engine.revision == 25
    engine.set_many([Record("r3", {"i": -3}), ("r4", {"i": -4})])
    assert engine.get("r3")["i"] == -3 and engine.get("r4").revision == 27
    with pytest.raises(QueryError):
        engine.set_many(["ok { a: 1 }", "bad { a: _ }"])
    assert not engine.exists("ok")
    with pytest.raises(QueryError):
        engine.set_many([("Bad", {})])


def test_many_threads_each_with_their_own_records(engine: octopus.Engine) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(200):
                engine.set(f"t{t}_{i} {{ i: {i} }}")
                assert engine.get(f"t{t}_{i}")["i"] == i
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert engine.count() == 1600 and engine.revision == 1600


def test_short_lived_threads_detach_their_prolog_engines(engine: octopus.Engine) -> None:
    from octopus._prolog import runtime

    rt = runtime()

    def threads_now() -> int:
        return int(rt.janus.query_once("statistics(threads, N)")["N"])

    before = threads_now()
    for _ in range(50):
        th = threading.Thread(target=engine.exists, args=("x",))
        th.start()
        th.join()
    assert threads_now() <= before + 1
