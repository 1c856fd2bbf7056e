"""A pure-Python model of what a durable engine must hold after a crash, replayed from
the acknowledged operations of one writer (a process or a client), and the check of a
restarted engine against it.

Each writer owns its names (``prefix``), so its operations are ordered by itself: at
most one of them was in flight when the crash came (an *intent* without an
acknowledgement). After a restart the store must equal the model of the acknowledged
operations, or that model with the in-flight operation applied (all of it: a batch is
atomic); ephemeral records never survive; revisions only grow; a sequential name is
never handed out twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from octopus import Record

Op = dict[str, Any]


@dataclass
class Writer:
    """The model of one writer's records."""

    prefix: str
    records: dict[str, tuple[dict[str, Any], int, bool]] = field(default_factory=dict)
    sequential: set[str] = field(default_factory=set)   # every name ever handed out
    last_revision: int = 0
    pending: Op | None = None

    def apply(self, op: Op, revision: int | None) -> None:
        """An acknowledged operation (``revision``: what the engine answered)."""
        kind = op["op"]
        if revision is not None:
            assert revision > self.last_revision, (op, revision, self.last_revision)
            self.last_revision = revision
        if kind == "set":
            self.records[op["name"]] = (op["attrs"], revision or 0, bool(op.get("eph")))
        elif kind == "cas":
            if op["ok"]:
                self.records[op["name"]] = (op["attrs"], revision or 0, False)
        elif kind == "del":
            if op["ok"]:
                del self.records[op["name"]]
        elif kind == "seq":
            name = op["name"]
            assert name not in self.sequential, f"sequential name {name} handed out twice"
            self.sequential.add(name)
            self.records[name] = (op["attrs"], revision or 0, False)
        elif kind == "many":
            for i, (name, attrs) in enumerate(op["rows"]):
                rev = (revision or 0) - len(op["rows"]) + 1 + i
                self.records[name] = (attrs, rev, False)
        else:
            raise AssertionError(f"unknown op {op}")

    def expected_names(self) -> set[str]:
        return {n for n, (_, _, eph) in self.records.items() if not eph}

    def check(self, stored: dict[str, Record], restart_revision: int) -> None:
        """Check the restarted store (this writer's records) and absorb the in-flight
        operation if it happened."""
        assert restart_revision >= self.last_revision, (restart_revision, self.last_revision)
        # Ephemeral records of the previous run are gone, whatever happened.
        self.records = {n: v for n, v in self.records.items() if not v[2]}
        differ = {n for n in set(stored) | set(self.records)
                  if n not in stored or n not in self.records
                  or stored[n].attributes != self.records[n][0]
                  or stored[n].revision != self.records[n][1]}
        pending, self.pending = self.pending, None
        if not differ:
            if pending is not None and pending["op"] == "seq":
                # Applied but not acknowledged, with its record gone? Never: nothing
                # deletes sequential names here; so it did not happen.
                pass
            return
        assert pending is not None, f"store differs from the acknowledged writes: {differ}"
        kind = pending["op"]
        if kind in ("set", "cas"):
            name = pending["name"]
            assert differ == {name}, (differ, pending)
            if pending.get("eph"):
                # It happened, replacing a record; then it expired with its session.
                assert name not in stored, f"ephemeral record {name} survived a restart"
                del self.records[name]
                return
            assert stored[name].attributes == pending["attrs"], (stored[name], pending)
            assert stored[name].revision > self.last_revision
            self.records[name] = (pending["attrs"], stored[name].revision, False)
            self.last_revision = stored[name].revision
        elif kind == "del":
            name = pending["name"]
            assert differ == {name} and name not in stored, (differ, pending)
            del self.records[name]
        elif kind == "seq":
            assert len(differ) == 1, (differ, pending)
            (name,) = differ
            assert name.startswith(pending["base"]) and name not in self.records
            assert name not in self.sequential, f"sequential name {name} handed out twice"
            assert stored[name].attributes == pending["attrs"]
            self.sequential.add(name)
            self.records[name] = (pending["attrs"], stored[name].revision, False)
            self.last_revision = stored[name].revision
        elif kind == "many":
            names = {n for n, _ in pending["rows"]}
            assert differ == names, f"a batch applied in part: {differ} vs {names}"
            for name, attrs in pending["rows"]:
                assert stored[name].attributes == attrs
                self.records[name] = (attrs, stored[name].revision, False)
            self.last_revision = max(stored[n].revision for n in names)
        else:
            raise AssertionError(f"unexpected difference {differ} for {pending}")
