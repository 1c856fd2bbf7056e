"""Property tests: canonical text round-trips, the engine agrees with a pure-Python model
of the store, and byte soup never escapes as anything but an OctopusError."""

from __future__ import annotations

import contextlib
import re
import shutil
import string
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import octopus
from octopus import Atom, ConditionFailed, NotFound, OctopusError, Record
from octopus.core import Change, ChangeOp
from octopus.query.parser import parse
from octopus.record import natural_key

names = st.from_regex(r"[a-z][A-Za-z0-9._\-]{0,12}", fullmatch=True).filter(
    lambda s: s not in ("true", "false"))
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    names.map(Atom),
    st.booleans(),
)
records = st.builds(Record, names, st.dictionaries(names, values, max_size=6))


@given(records)
def test_canonical_text_round_trips(record: Record) -> None:
    text = str(record)
    with octopus.Engine() as e:
        stored = e.set(text)
    assert stored == record and str(stored) == text
    again = Record._trusted(stored.name, dict(stored.attributes), 0)
    assert str(again) == text
    for key, value in record.attributes.items():
        assert type(stored[key]) is type(value)


@given(st.lists(names, min_size=1, max_size=30))
def test_natural_order_agrees_with_python(found: list[str]) -> None:
    with octopus.Engine() as e:
        for n in set(found):
            e.set(n)
        assert e.get_names("_") == sorted(set(found), key=natural_key)


@settings(max_examples=300)
@given(st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_text_soup_raises_only_octopus_errors(text: str) -> None:
    with octopus.Engine() as e:
        e.set("keep { a: 1 }")
        for call in (e.get, e.get_names, e.get_all, e.exists, e.set, e.delete, e.publish):
            with contextlib.suppress(OctopusError):
                call(text)
        assert e.get("keep")["a"] == 1


def test_huge_query_is_refused_cleanly() -> None:
    with octopus.Engine() as e:
        for call in (e.get, e.set, e.delete):
            try:
                call("x { a: '" + "z" * (2 * 1024 * 1024) + "' }")
            except octopus.QueryError as err:
                assert "limit" in str(err)
            else:
                raise AssertionError("accepted")
        assert e.get_names("_") == []


# --- the engine against a model -------------------------------------------------------

POOL = ["a", "b", "c10", "c2", "d.x"]
KEYS = ["k", "m"]
small = st.one_of(st.integers(-3, 3), st.sampled_from(["s", "t"]), st.booleans(),
                  st.sampled_from([1.0, 2.5]))


def model_eq(x: Any, y: Any) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return isinstance(x, bool) and isinstance(y, bool) and x == y
    if isinstance(x, str) or isinstance(y, str):
        return isinstance(x, str) and isinstance(y, str) and x == y
    return bool(x == y)


def model_cmp(x: Any, y: Any, op: str) -> bool:
    if isinstance(x, bool) or isinstance(y, bool):
        return op in ("==", "!=") and isinstance(x, bool) and isinstance(y, bool) and (
            (x == y) == (op == "=="))
    if isinstance(x, str) != isinstance(y, str):
        return False
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y,
            ">=": x >= y}[op]


def literal(v: Any) -> str:
    return octopus.record.format_value(v)


class StoreModel(RuleBasedStateMachine):
    """The engine against a dictionary; durable (fsync="no"), so that "restart" is a
    step: a clean one (close, reopen) or a crash (reopen a copy of the files taken
    while the engine runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="octopus-model-"))
        self.generation = 0
        self.engine = octopus.Engine(path=self.root / "0", fsync="no", compact_min_bytes=2000)
        self.model: dict[str, tuple[dict[str, Any], int]] = {}
        self.revision = 0
        self.seq: dict[str, int] = {}
        self.changes: list[Change] = []
        self.engine.observe(self.changes.append)
        self.sessions: list[octopus.Session] = []
        # The store the change stream starts from (the state at the last restart).
        self.base: dict[str, tuple[Record, int]] = {}
        self.base_revision = 0

    def teardown(self) -> None:
        self.engine.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def matches(self, name: str, query: tuple[str | None, list[tuple[str, str, Any]]]) -> bool:
        pattern, cs = query
        if pattern is not None and not re.search(pattern, name):
            return False
        attrs = self.model[name][0]
        return all(k in attrs and (model_eq(attrs[k], v) if op == ":" else
                                   model_cmp(attrs[k], v, op)) for k, op, v in cs)

    @staticmethod
    def text(name: str, cs: list[tuple[str, str, Any]]) -> str:
        body = ", ".join(f"{k}: {literal(v)}" if op == ":" else f"{k} {op} {literal(v)}"
                         for k, op, v in cs)
        return f"{name} {{ {body} }}"

    @rule(name=st.sampled_from(POOL), attrs=st.dictionaries(st.sampled_from(KEYS), small))
    def set(self, name: str, attrs: dict[str, Any]) -> None:
        r = self.engine.set(self.text(name, [(k, ":", v) for k, v in attrs.items()]))
        self.revision += 1
        self.model[name] = (attrs, self.revision)
        assert r.revision == self.revision

    @rule(name=st.sampled_from(POOL), new=small, key=st.sampled_from(KEYS),
          op=st.sampled_from(["==", "!=", "<", ">="]), expect=small)
    def compare_and_set(self, name: str, new: Any, key: str, op: str, expect: Any) -> None:
        text = self.text(name, [("v", ":", new), (key, op, expect)])
        ok = name in self.model and self.matches(name, (None, [(key, op, expect)]))
        if isinstance(expect, bool) and op in ("<", ">="):
            try:
                self.engine.set(text)
            except octopus.QueryError:
                return
            raise AssertionError("boolean ordering accepted")
        try:
            self.engine.set(text)
        except ConditionFailed:
            assert not ok
        else:
            assert ok
            self.revision += 1
            self.model[name] = ({"v": new}, self.revision)

    @rule(name=st.sampled_from(POOL), cond=st.lists(st.tuples(st.sampled_from(KEYS),
                                                              st.just(":"), small), max_size=1))
    def delete(self, name: str, cond: list[tuple[str, str, Any]]) -> None:
        ok = name in self.model and self.matches(name, (None, cond))
        try:
            r = self.engine.delete(self.text(name, cond))
        except NotFound:
            assert not ok
        else:
            assert ok and r.revision == self.model[name][1]
            del self.model[name]
            self.revision += 1

    @rule(data=st.data())
    def delete_existing(self, data: st.DataObject) -> None:
        # Sequential names too: their counter, not the free names, says what comes next.
        if not self.model:
            return
        name = data.draw(st.sampled_from(sorted(self.model)))
        r = self.engine.delete(name)
        assert r.revision == self.model[name][1]
        del self.model[name]
        self.revision += 1

    @rule(base=st.sampled_from(["q", "q_"]))
    def sequential(self, base: str) -> None:
        n = self.seq.get(base, 0)
        while f"{base}{n}" in self.model:
            n += 1
        r = self.engine.set(base, sequential=True)
        assert r.name == f"{base}{n}"
        self.seq[base] = n + 1
        self.revision += 1
        self.model[r.name] = ({}, self.revision)

    @rule(pattern=st.sampled_from([None, "^c", "x$", "1"]),
          cs=st.lists(st.tuples(st.sampled_from(KEYS),
                                st.sampled_from([":", "==", "!=", "<", "<=", ">", ">="]),
                                small.filter(lambda v: not isinstance(v, bool))), max_size=2))
    def query(self, pattern: str | None, cs: list[tuple[str, str, Any]]) -> None:
        name = "_" if pattern is None else f"r'{pattern}'"
        text = self.text(name, cs)
        expected = sorted((n for n in self.model if self.matches(n, (pattern, cs))),
                          key=natural_key)
        assert self.engine.get_names(text) == expected
        assert self.engine.exists(text) == bool(expected)
        if expected:
            r = self.engine.get(text)
            assert r.name == expected[0] and r.revision == self.model[expected[0]][1]

    @rule(name=st.sampled_from(POOL), new_session=st.booleans())
    def ephemeral(self, name: str, new_session: bool) -> None:
        if new_session or not self.sessions:
            self.sessions.append(self.engine.session())
        self.sessions[-1].set(name, ephemeral=True)
        self.revision += 1
        self.model[name] = ({}, self.revision)

    @rule()
    def end_session(self) -> None:
        if not self.sessions:
            return
        session = self.sessions.pop(0)
        last: dict[str, Change] = {c.name: c for c in self.changes}
        mine = [n for n, c in last.items()
                if c.op is ChangeOp.SET and c.owner == session._sid]
        session.close()
        # Its records that nobody replaced since go, in natural order, one change each.
        for name in sorted(mine, key=natural_key):
            self.revision += 1
            del self.model[name]
            change = self.changes[self.revision - self.base_revision - 1]
            assert (change.op, change.name, change.owner) == (ChangeOp.DELETE, name,
                                                              session._sid)

    def _ephemeral(self) -> dict[str, int]:
        """Ephemeral names (since the last restart, which ended all) and their owners."""
        last: dict[str, Change] = {c.name: c for c in self.changes}
        return {n: c.owner for n, c in last.items()
                if c.op is ChangeOp.SET and c.owner is not None}

    @rule(crash=st.booleans(), compact=st.booleans())
    def restart(self, crash: bool, compact: bool) -> None:
        if compact:
            self.engine.compact()
        ephemeral = self._ephemeral()
        old = self.root / str(self.generation)
        self.generation += 1
        new = self.root / str(self.generation)
        if crash:
            # The files as they are while the engine runs, sessions open: its
            # ephemeral records expire when the copy is opened, in natural order.
            shutil.copytree(old, new, ignore=shutil.ignore_patterns("LOCK"))
            gone = sorted(ephemeral, key=natural_key)
            self.engine.close()
        else:
            # close() ends the sessions one by one (in the order they were opened),
            # each deleting its records in natural order.
            gone = [n for s in self.sessions
                    for n in sorted((n for n, o in ephemeral.items() if o == s._sid),
                                    key=natural_key)]
            self.engine.close()
            old.rename(new)
        for name in gone:
            self.revision += 1
            del self.model[name]
        self.sessions = []
        self.engine = octopus.Engine(path=new, fsync="no", compact_min_bytes=2000)
        assert self.engine.revision == self.revision
        self.changes = []
        self.engine.observe(self.changes.append)
        self.base = {n: (Record(n, a), rev) for n, (a, rev) in self.model.items()}
        self.base_revision = self.revision

    @invariant()
    def the_change_stream_replays_to_the_store(self) -> None:
        # Every committed change was observed once, in revision order, and replaying
        # them rebuilds the store exactly.
        assert [c.revision for c in self.changes] == list(range(self.base_revision + 1,
                                                                self.revision + 1))
        replay: dict[str, tuple[Record, int]] = dict(self.base)
        for c in self.changes:
            if c.op is ChangeOp.SET:
                replay[c.name] = (c.record, c.revision)
            else:
                assert replay.pop(c.name)[0] == c.record
        assert {n: (Record(n, a), rev) for n, (a, rev) in self.model.items()} == replay

    @invariant()
    def same_contents(self) -> None:
        assert self.engine.revision == self.revision
        records = {r.name: r for r in self.engine.get_all("_")}
        assert set(records) == set(self.model)
        for n, (attrs, rev) in self.model.items():
            assert records[n] == Record(n, attrs) and records[n].revision == rev


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_lexer_never_crashes_on_printable_ascii() -> None:
    alphabet = string.printable
    for i in range(2000):
        text = "".join(alphabet[(i * 7 + j * 13) % len(alphabet)] for j in range(i % 23))
        with contextlib.suppress(octopus.QueryError):
            parse(text)
