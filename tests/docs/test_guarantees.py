"""docs/guarantees.md names the tests that check each guarantee: those tests must exist.

Also here: the tests of guarantees that no other suite checked directly (each is named
in docs/guarantees.md).
"""

from __future__ import annotations

import ast
import functools
import re
import threading
from pathlib import Path

import pytest

import octopus
from octopus import Event, Mode
from octopus.server.testing import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
GUARANTEES = ROOT / "docs" / "guarantees.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]`]*\])?`")
ITEM = re.compile(r"^\d+\. ")


@functools.cache
def defined_tests(path: Path) -> set[str]:
    """``name`` and ``Class::method`` for every test function and class of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
            names.update(f"{node.name}::{m.name}" for m in node.body
                         if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)))
        elif isinstance(node, ast.Assign):     # TestModel = Model.TestCase
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if n.split("::")[-1].startswith(("test_", "Test"))}


def references(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]


def items(text: str) -> list[tuple[int, str]]:
    """The numbered list items of a markdown text: (line number, item text)."""
    found: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if ITEM.match(line):
            current = [line]
            found.append((number, current))
        elif current is not None and (line.startswith("   ") or not line.strip()):
            current.append(line)            # indented or blank: the item goes on
        else:
            current = None
    return [(number, "\n".join(lines)) for number, lines in found]


@pytest.mark.parametrize("doc", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_every_test_a_doc_names_exists(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    missing = []
    for file, name in references(text):
        path = ROOT / file
        if not path.is_file() or name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/{doc} names tests that do not exist: {missing}"


def test_every_guarantee_names_its_tests() -> None:
    text = GUARANTEES.read_text(encoding="utf-8")
    guarantees = items(text)
    assert len(guarantees) >= 40
    unchecked = [f"docs/guarantees.md:{n}: {item.splitlines()[0][:70]}"
                 for n, item in guarantees if not references(item)]
    assert not unchecked, "guarantees without a test:\n" + "\n".join(unchecked)


def test_the_reference_checker_sees_what_is_missing(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text("def test_a(): pass\nclass TestB:\n    def test_c(self): pass\n"
                      "def helper(): pass\nTestModel = object\n")
    assert defined_tests(module) == {"test_a", "TestB", "TestB::test_c", "TestModel"}
    assert references("`tests/a.py::test_b[x-1]` and `tests/c/d.py::E::test_f`") == [
        ("tests/a.py", "test_b"), ("tests/c/d.py", "E::test_f")]
    found = items("1. one\n   more\n\n   ```\n   x\n   ```\n2. two\n\ntext\n3. three\n")
    assert [(n, text.count("\n")) for n, text in found] == [(1, 5), (7, 1), (10, 0)]


# --- guarantees checked here ----------------------------------------------------------

def test_concurrent_compare_and_set_loses_no_update(engine: octopus.Engine) -> None:
    """Four threads increment one counter with compare-and-set: no increment is lost."""
    engine.set("counter { value: 0 }")
    rounds = 150

    def increment() -> None:
        for _ in range(rounds):
            while True:
                value = engine.get("counter")["value"]
                try:
                    engine.set("counter { value: %d, value == %d }", value + 1, value)
                    break
                except octopus.ConditionFailed:
                    continue

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.get("counter")["value"] == 4 * rounds


def test_a_reader_never_sees_half_a_set(engine: octopus.Engine) -> None:
    """A set replaces the whole record at once: readers see the old or the new one."""
    engine.set("pair { a: 0, b: 0 }")
    stop = threading.Event()
    torn: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            r = engine.get("pair")
            if r["a"] != r["b"] or len(r) != 2:
                torn.append(str(r))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(1, 400):
        engine.set("pair { a: %d, b: %d }", i, i)
    stop.set()
    for t in threads:
        t.join()
    assert torn == []


def test_events_of_all_triggers_arrive_in_revision_order(engine: octopus.Engine) -> None:
    """One dispatcher queue: across triggers, events come in the order of the changes."""
    log: list[Event] = []
    for query in ("_ { w: 0 }", "_ { w: 1 }", "_ { w: _ }", "r'^k'", "_"):
        engine.watch(query, log.append)

    def writer(w: int) -> None:
        for i in range(100):
            engine.set(f"k{w}_{i % 7} {{ w: {w} }}")
            if i % 5 == 4:
                engine.delete(f"k{w}_{i % 7}")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.flush()
    revisions = [e.revision for e in log]
    assert len(log) == 2 * 120 * 4 and revisions == sorted(revisions)


def test_engine_close_delivers_the_last_events_then_refuses_calls() -> None:
    """Closing the engine ends every session (ON_DEL for ephemeral records), removes every
    trigger and subscription (a last REMOVED event each), and delivers all of it before
    close() returns; afterwards every call raises EngineClosed."""
    engine = octopus.Engine()
    got: list[Event] = []
    engine.watch("_", got.append, on=Mode.ON_DEL)
    session = engine.session()
    session.set("eph { a: 1 }", ephemeral=True)
    session.subscribe("m", got.append)
    engine.set("mine", ephemeral=True)
    engine.close()
    assert [(e.mode, e.record.name if e.record else None) for e in got] == [
        (Mode.ON_DEL, "eph"), (Mode.REMOVED, None), (Mode.ON_DEL, "mine"),
        (Mode.REMOVED, None)]
    for call in (lambda: engine.get("x"), lambda: session.set("y"),
                 lambda: engine.publish("m"), lambda: engine.session()):
        with pytest.raises(octopus.EngineClosed):
            call()
    engine.close()


def test_only_the_installing_connection_removes_a_trigger() -> None:
    with serve_in_thread() as url, octopus.connect(url) as a, octopus.connect(url) as b:
        got: list[Event] = []
        trigger = a.watch("x", got.append)
        subscription = a.subscribe("m", got.append)
        with pytest.raises(octopus.TriggerNotFound):
            b.remove_trigger(trigger)
        with pytest.raises(octopus.TriggerNotFound):
            b.unsubscribe(subscription)
        b.set("x")
        assert b.publish("m") == 1
        a.flush()
        assert [e.mode for e in got] == [Mode.ON_SET, Mode.ON_PUBLISH]
