"""A hypothesis state machine interleaving trigger installs, removals and changes, and
checking every delivered event against a model."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import octopus
from octopus import Event, Mode, Trigger

NAMES = ["a", "b", "c1", "c2"]
QUERIES: dict[str, Any] = {
    "a": lambda n, attrs: n == "a",
    "_ { k: 1 }": lambda n, attrs: attrs.get("k") == 1,
    "_ { k: _ }": lambda n, attrs: "k" in attrs,
    "r'^c'": lambda n, attrs: n.startswith("c"),
    "_": lambda n, attrs: True,
}
MODES = [Mode.ON_SET, Mode.ON_DEL, Mode.ON_SET | Mode.ON_DEL]


class TriggerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = octopus.Engine()
        self.store: dict[str, dict[str, int]] = {}
        self.live: dict[int, tuple[str, Mode, bool]] = {}
        self.expected: dict[int, list[tuple[Mode, str | None]]] = {}
        self.received: dict[int, list[Event]] = {}

    def teardown(self) -> None:
        self.engine.close()

    def handler_for(self, box: list[Event]) -> Any:
        return box.append

    @rule(query=st.sampled_from(sorted(QUERIES)), on=st.sampled_from(MODES),
          persist=st.booleans())
    def install(self, query: str, on: Mode, persist: bool) -> None:
        box: list[Event] = []
        t = Trigger(box.append, on=on, persist=persist)
        self.engine.exists(query, trigger=t)
        assert t.id is not None and t.id not in self.live
        self.live[t.id] = (query, on, persist)
        self.expected[t.id] = []
        self.received[t.id] = box

    def change(self, mode: Mode, name: str, attrs: dict[str, int]) -> None:
        for tid, (query, on, persist) in sorted(self.live.items()):
            if on & mode and QUERIES[query](name, attrs):
                self.expected[tid].append((mode if persist else mode | Mode.REMOVED, name))
                if not persist:
                    del self.live[tid]

    @rule(name=st.sampled_from(NAMES), k=st.sampled_from([None, 1, 2]))
    def set(self, name: str, k: int | None) -> None:
        attrs = {} if k is None else {"k": k}
        self.engine.set(name if k is None else f"{name} {{ k: {k} }}")
        self.store[name] = attrs
        self.change(Mode.ON_SET, name, attrs)

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        try:
            self.engine.delete(name)
        except octopus.NotFound:
            assert name not in self.store
            return
        self.change(Mode.ON_DEL, name, self.store.pop(name))

    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        if not self.live:
            return
        tid = data.draw(st.sampled_from(sorted(self.live)))
        self.engine.remove_trigger(tid)
        del self.live[tid]
        self.expected[tid].append((Mode.REMOVED, None))

    @invariant()
    def events_match_the_model(self) -> None:
        self.engine.flush()
        for tid, want in self.expected.items():
            got = [(e.mode, e.record.name if e.record is not None else None)
                   for e in self.received[tid]]
            assert got == want, (tid, self.live.get(tid))
            revisions = [e.revision for e in self.received[tid]]
            assert revisions == sorted(revisions)


TestTriggerModel = TriggerModel.TestCase
TestTriggerModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
