"""A soak run: threads doing every kind of operation on one engine for a while.

Run as a program (``python tests/soak/soak.py --seconds 60``); tests/soak/test_soak.py
runs it in a subprocess and checks its report, the JSON object on the last line of
standard output:

- ``ops``: operations done per worker (every worker must have made progress);
- ``events``: per persistent trigger and subscription, events ``expected`` (from the
  engine's change stream, or the messages published), ``lost``, ``extra`` and
  ``duplicated``; ``removed``: temporary triggers whose REMOVED event did not come
  exactly once;
- ``violations``: mutual exclusion broken (two lock holders, more semaphore holders
  than permits);
- ``errors``: unexpected exceptions in workers;
- ``stalls``: workers that made no progress for ``--stall`` seconds (all threads'
  stacks are dumped to standard error by faulthandler when that happens);
- ``rss``: resident set size samples ``[seconds, bytes]``, and ``warmup`` seconds.

Workers: writers set and delete records of their own group; a reader reads them; a
watcher installs and removes temporary triggers and waits for records; lockers take a
lock and a semaphore; sessions open, write ephemeral records, lock, and close; a
publisher publishes to three subscriptions; a knowledge-base worker asks goals,
iterates, drops iterators and reloads a file.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import faulthandler
import json
import os
import random
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import octopus
from octopus import Event, Mode, NotFound, WaitTimeout
from octopus.core import Change, ChangeOp

WRITERS = 2
SESSIONS = 2
TOPICS = 3


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Soak:
    def __init__(self, seconds: float, stall: float, seed: int,
                 only: set[str] | None = None) -> None:
        self.only = only
        self.seconds = seconds
        self.stall = stall
        self.random = random.Random(seed)
        self.engine = octopus.Engine()
        self.stop = threading.Event()
        self.beats: dict[str, float] = {}
        self.ops: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.lock = threading.Lock()
        # Events are checked as they come, in constant memory: the change stream (or
        # the publisher) adds what a handler must receive, the handler takes it away;
        # what is left at the end was lost. Events of one trigger come in revision
        # order, so a revision not above the last one seen is a duplicate.
        self.expected: collections.Counter[str] = collections.Counter()
        self.outstanding: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self.last: dict[str, int] = {}
        self.duplicated: collections.Counter[str] = collections.Counter()
        self.subscriptions: dict[int, int] = {}      # key -> its topic (-1: every topic)
        self.awaiting_removal: set[int] = set()
        self.removals_unexpected = 0
        self.kb_file = Path(tempfile.mkdtemp(prefix="octopus-soak-")) / "kb.pl"

    # --- bookkeeping ---------------------------------------------------------------

    def expect(self, key: str, number: int, mode: str) -> None:
        self._count(key, number, mode, 1)
        with self.lock:
            self.expected[key] += 1

    def received(self, key: str, number: int, mode: str) -> None:
        with self.lock:
            if number <= self.last.get(key, -1):
                self.duplicated[key] += 1
            self.last[key] = number
        self._count(key, number, mode, -1)

    def _count(self, key: str, number: int, mode: str, n: int) -> None:
        # The handler may run before the observer has seen the change (the dispatcher
        # does not wait for the commit to end), so a count may go below zero for a
        # moment; at the end, above zero is lost, below zero is extra.
        with self.lock:
            left = self.outstanding[(key, number, mode)] + n
            if left:
                self.outstanding[(key, number, mode)] = left
            else:
                del self.outstanding[(key, number, mode)]

    def observe(self, change: Change) -> None:       # inside the commit: only count
        group = change.record.get("group")
        if isinstance(group, int):
            mode = "set" if change.op is ChangeOp.SET else "del"
            self.expect(f"group {group}", change.revision, mode)

    def on_group(self, group: int) -> Callable[[Event], None]:
        def handler(event: Event) -> None:
            mode = {Mode.ON_SET: "set", Mode.ON_DEL: "del"}.get(event.mode, str(event.mode))
            self.received(f"group {group}", event.revision, mode)
        return handler

    def on_message(self, key: int) -> Callable[[Event], None]:
        def handler(event: Event) -> None:
            if event.record is not None:
                self.received(f"subscription {key}", event.record["seq"], "message")
        return handler

    def on_temporary(self, event: Event) -> None:
        if event.mode is Mode.REMOVED:
            with self.lock:
                if event.trigger_id in self.awaiting_removal:
                    self.awaiting_removal.remove(event.trigger_id)
                else:
                    self.removals_unexpected += 1

    def beat(self, name: str) -> None:
        self.beats[name] = time.monotonic()
        self.ops[name] += 1

    def worker(self, name: str, step: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            while not self.stop.is_set():
                try:
                    step()
                except Exception:
                    self.errors.append(f"{name}: {traceback.format_exc()}")
                    self.stop.set()
                self.beat(name)

        self.beats[name] = time.monotonic()
        thread = threading.Thread(target=run, name=f"soak-{name}", daemon=True)
        return thread

    # --- the workers -----------------------------------------------------------------

    def writer(self, group: int) -> Callable[[], None]:
        rnd = random.Random(group)

        def step() -> None:
            k = rnd.randrange(40)
            if rnd.random() < 0.35:
                with contextlib.suppress(NotFound):
                    self.engine.delete("%n", f"g{group}_{k}")
            else:
                self.engine.set("%n { group: %d, n: %d, text: %s }", f"g{group}_{k}", group,
                                rnd.randrange(1000), "x" * rnd.randrange(200))
        return step

    def reader(self) -> None:
        group = self.random.randrange(WRITERS)
        self.engine.get_all("_ { group: %d }", group)
        self.engine.get_names("_ { group: %d, n > %d }", group, 500)
        with contextlib.suppress(NotFound):
            self.engine.get("_ { group: %d }", group)

    def watcher(self) -> None:
        trigger = self.engine.watch("_ { group: %d }", self.on_temporary,
                                    self.random.randrange(WRITERS))
        with self.lock:
            self.awaiting_removal.add(trigger.id)    # type: ignore[arg-type]
        with contextlib.suppress(WaitTimeout):
            self.engine.wait_for("_ { group: %d, n < 100 }", self.random.randrange(WRITERS),
                                 timeout=0.05)
        self.engine.remove_trigger(trigger)

    def locker(self, inside: list[int], name: str) -> Callable[[], None]:
        lock = self.engine.lock("soak-lock", name)
        sem = self.engine.semaphore("soak-sem", 2)

        def step() -> None:
            if lock.acquire(timeout=10):
                try:
                    with self.lock:
                        inside[0] += 1
                        if inside[0] != 1:
                            self.violations.append(f"{inside[0]} lock holders")
                    time.sleep(0.001)
                    with self.lock:
                        inside[0] -= 1
                finally:
                    lock.release()
            if sem.acquire(timeout=10):
                try:
                    with self.lock:
                        inside[1] += 1
                        if inside[1] > 2:
                            self.violations.append(f"{inside[1]} semaphore holders")
                    with self.lock:
                        inside[1] -= 1
                finally:
                    sem.release()
        return step

    def sessions(self, group: int) -> Callable[[], None]:
        rnd = random.Random(group)

        def step() -> None:
            with self.engine.session() as s:
                for k in range(5):
                    s.set("%n { group: %d, k: %d }", f"s{group}_{k}", group, k, ephemeral=True)
                if rnd.random() < 0.5:
                    s.delete("%n", f"s{group}_{rnd.randrange(5)}")
                with s.lock("soak-session-lock") as held:
                    assert held.token is not None
                s.names.register(f"svc{group}", port=group)
        return step

    def publisher(self) -> None:
        topic, seq = self.random.randrange(TOPICS), self.ops["publisher"]
        for key, wanted in self.subscriptions.items():
            if wanted in (-1, topic):
                self.expect(f"subscription {key}", seq, "message")
        self.engine.publish("m { topic: %d, seq: %d }", topic, seq)

    def knowledge(self) -> None:
        n = self.ops["kb"]
        if n % 50 == 0:     # replaces the file's clauses: the KB does not grow
            self.kb_file.write_text("p(1). p(2). p(3).\nq(X) :- p(X), X > 1.\n"
                                    f"version({n}).\n")
            self.engine.consult(self.kb_file)
        assert self.engine.prolog("q(X)") == [{"X": 2}, {"X": 3}]
        it = self.engine.prolog_iter("between(1, inf, X)")
        next(it)
        if n % 2:
            it.close()      # else dropped: reclaimed by a later call

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        faulthandler.dump_traceback_later(self.seconds + self.stall * 3, exit=True)
        self.engine.observe(self.observe)
        for group in [*range(WRITERS), *range(100, 100 + SESSIONS)]:
            self.engine.watch("_ { group: %d }", self.on_group(group), group)
        for key, query in enumerate(["_ { topic: 0 }", "_ { topic: 1 }", "m"]):
            sub = self.engine.subscribe(query, self.on_message(key))
            self.subscriptions[key] = key if key < 2 else -1
            assert sub.id is not None
        inside = [0, 0]
        threads = [
            *(self.worker(f"writer{g}", self.writer(g)) for g in range(WRITERS)),
            self.worker("reader", self.reader),
            self.worker("watcher", self.watcher),
            self.worker("locker0", self.locker(inside, "a")),
            self.worker("locker1", self.locker(inside, "b")),
            *(self.worker(f"session{g}", self.sessions(100 + g)) for g in range(SESSIONS)),
            self.worker("publisher", self.publisher),
            self.worker("kb", self.knowledge),
        ]
        if self.only:       # to find which kind of work a problem comes from
            threads = [t for t in threads if t.name.removeprefix("soak-").rstrip("0123456789")
                       in self.only]
            self.beats = {n: b for n, b in self.beats.items() if f"soak-{n}" in
                          {t.name for t in threads}}
        start = time.monotonic()
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        stalls: list[str] = []
        while not self.stop.is_set():
            now = time.monotonic()
            if now - start >= self.seconds:
                break
            samples.append((round(now - start, 2), rss()))
            stuck = [n for n, beat in self.beats.items() if now - beat > self.stall]
            if stuck:
                stalls.extend(stuck)
                faulthandler.dump_traceback(all_threads=True)
                break
            time.sleep(0.25)
        self.stop.set()
        for t in threads:
            t.join(self.stall)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            stalls.extend(alive)
            faulthandler.dump_traceback(all_threads=True)
        flushed = self.engine.flush(self.stall)
        samples.append((round(time.monotonic() - start, 2), rss()))
        report = {
            "ops": dict(self.ops),
            "events": self.compare(),
            "removed": {"missing": len(self.awaiting_removal),
                        "unexpected": self.removals_unexpected},
            "violations": self.violations,
            "errors": self.errors,
            "stalls": stalls + ([] if flushed else ["flush"]),
            "rss": samples,
            "open_iterators": self.engine.kb.open_iterators,
        }
        if not stalls:
            self.engine.close()
        faulthandler.cancel_dump_traceback_later()
        return report

    def compare(self) -> dict[str, dict[str, int]]:
        lost: collections.Counter[str] = collections.Counter()
        extra: collections.Counter[str] = collections.Counter()
        for (key, _, _), n in self.outstanding.items():
            if n > 0:
                lost[key] += n
            else:
                extra[key] -= n
        return {key: {"expected": self.expected[key], "lost": lost[key],
                      "extra": extra[key], "duplicated": self.duplicated[key],
                      "sample": [list(k) for k in self.outstanding if k[0] == key][:4]}
                for key in sorted(self.expected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--stall", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="comma-separated kinds of worker to run "
                        "(writer, reader, watcher, locker, session, publisher, kb)")
    args = parser.parse_args()
    faulthandler.enable()
    only = set(args.only.split(",")) if args.only else None
    report = Soak(args.seconds, args.stall, args.seed, only).run()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
