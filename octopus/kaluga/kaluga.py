"""Kaluga, the device manager: device records in, drivers started.

Theory of operation:

1. Kaluga watches the device records (``hw.acpi``, ``hw.processor.<n>``,
   ``hw.pci.rootbridge.<n>``, ``hw.pci.device.<n>``, ``hw.usb.device.<n>``) with
   ``watch_existing``: one ON_SET event per record already there, then every later
   change, with no duplicate and no gap. Handlers only queue the events; Kaluga's own
   thread handles them in order, so it may block (wait for a barrier, ask the
   knowledge base) without holding up the engine's dispatcher.
2. A device is handled once: a record that is set again (updated) starts nothing new.
   A deleted device is forgotten (a later record of that name is a new device).
   Kaluga watches the derived relation ``stale_driver/1`` (prolog/kaluga_rules.pl,
   docs/rules.md): an instance none of whose devices is left. When a row appears,
   Kaluga stops that instance (the starter's ``stop``): removing the last device a
   driver serves stops the driver, removing one of several does not.
3. For each new device Kaluga asks the knowledge base (:class:`DriverDatabase`) for the
   highest-priority driver. No answer: the device is ignored. A driver that is not
   multi-instance is started once; later devices are assigned to that instance.
   Instance ``n`` of a multi-instance driver goes to core ``hint + offset * n``,
   wrapped around the number of enabled cores Kaluga knows of (if any).
4. A driver starts only when its core's ``spawn.<core>`` record exists. When it does
   not yet, Kaluga installs a one-shot trigger (``install_if="missing"``, so checking
   and watching are one atomic call) and starts the driver when the trigger fires: it
   never polls.
5. Starting is the starter's job (:class:`Starter`); the default
   :class:`ThreadStarter` writes ``driver.<binary>.<k> { device: ..., core: ... }`` and
   runs a Python callable for the binary in its own thread. ``after_start(order)`` then
   runs in Kaluga's thread (the boot demo enters the ACPI barrier there). A device
   assigned to an instance already running is written down as
   ``kaluga.assign.<device> { assigned_device: ..., instance: ... }`` (so the rules see
   which devices an instance serves).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from octopus.engine import Session
from octopus.errors import EngineClosed, NotFound, OctopusError
from octopus.events import Event, Mode, Trigger
from octopus.kaluga.drivers import DriverDatabase, DriverInfo, DriverStart, device_kind
from octopus.record import Record
from octopus.rules import RowEvent, RuleWatch

__all__ = ["DEVICE_QUERIES", "Decision", "DriverMain", "Kaluga", "Starter", "ThreadStarter"]

log = logging.getLogger("octopus.kaluga")

#: the queries Kaluga watches (with watch_existing)
DEVICE_QUERIES = (
    "hw.acpi",
    r"r'^hw\.processor\.'",
    r"r'^hw\.pci\.rootbridge\.'",
    r"r'^hw\.pci\.device\.'",
    r"r'^hw\.usb\.device\.'",
)

#: observer(kind, message, details): what Kaluga did, for timelines and logs
Observer = Callable[[str, str, Mapping[str, Any]], None]


class Starter(Protocol):
    """Starts driver instances for Kaluga (called from Kaluga's thread). A starter may
    also have ``stop(order)``, which Kaluga calls when no device of the instance is
    left; without one, Kaluga only deletes the instance's ``driver.<binary>.<k>``
    record."""

    def start(self, order: DriverStart) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What Kaluga decided for one device record."""

    device: str
    driver: str | None          # binary, None if ignored
    instance: str | None        # driver.<binary>.<k> serving it
    core: int | None
    started: bool               # False: assigned to an instance that already existed


DriverMain = Callable[[Session, DriverStart], Any]


class ThreadStarter:
    """The default starter: ``driver.<binary>.<k> { device, core }`` plus the binary's
    Python callable (or ``fallback``), run as ``main(session, order)`` in a thread of
    its own with a session of its own. Binaries without a callable get only their
    record."""

    def __init__(self, session: Session, drivers: Mapping[str, DriverMain] | None = None,
                 *, fallback: DriverMain | None = None,
                 on_error: Callable[[DriverStart, BaseException], None] | None = None
                 ) -> None:
        self.session = session
        self.drivers = dict(drivers or {})
        self.fallback = fallback
        self.on_error = on_error
        self.threads: list[threading.Thread] = []
        self.sessions: list[Session] = []
        self.errors: list[tuple[DriverStart, BaseException]] = []
        self.stopped: list[str] = []
        self._by_instance: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, order: DriverStart) -> None:
        self.session.set("%n { device: %n, core: %d }", order.name, order.device.name,
                         order.core)
        main = self.drivers.get(order.driver.binary, self.fallback)
        if main is None:
            return
        session = self.session.session()
        with self._lock:
            self._by_instance[order.name] = session
        thread = threading.Thread(target=self._run, args=(main, session, order),
                                  name=order.name.removeprefix("driver."), daemon=True)
        with self._lock:       # started under the lock: join() never sees it unstarted
            self.sessions.append(session)
            self.threads.append(thread)
            thread.start()

    def _run(self, main: DriverMain, session: Session, order: DriverStart) -> None:
        try:
            main(session, order)
        except EngineClosed:
            pass
        except BaseException as e:      # a driver's failure must not vanish silently
            log.exception("driver %s failed", order.name)
            with self._lock:
                self.errors.append((order, e))
            if self.on_error is not None:
                self.on_error(order, e)

    def stop(self, order: DriverStart) -> None:
        """Stop an instance: delete its record and close its session (its ephemeral
        records, such as its registered service, go with it; its thread's next call
        raises EngineClosed)."""
        with contextlib.suppress(NotFound):
            self.session.delete("%n", order.name)
        with self._lock:
            session = self._by_instance.pop(order.name, None)
            self.stopped.append(order.name)
        if session is not None:
            session.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every driver thread started so far; False if some still run."""
        with self._lock:
            threads = list(self.threads)
        for t in threads:
            t.join(timeout)
        return not any(t.is_alive() for t in threads)

    def close(self) -> None:
        """Close the drivers' sessions (their ephemeral records go with them)."""
        with self._lock:
            sessions, self.sessions = self.sessions, []
        for s in sessions:
            s.close()


class Kaluga:
    """The device manager. ``start()`` it; ``idle()`` waits until it has handled every
    event so far; ``stop()`` ends it (a context manager does both ends)."""

    def __init__(self, session: Session, *, starter: Starter | None = None,
                 platform: str | None = None, boot_core: int = 0,
                 require_spawnd: bool = True, observer: Observer | None = None,
                 after_start: Callable[[DriverStart], Any] | None = None,
                 load_database: bool = True) -> None:
        self.session = session
        self.db = DriverDatabase(session, platform)
        self.starter: Starter = starter if starter is not None else ThreadStarter(session)
        self.boot_core = boot_core
        self.require_spawnd = require_spawnd
        self.observer = observer
        self.after_start = after_start
        self.load_database = load_database
        self.decisions: dict[str, Decision] = {}
        self.instances: dict[str, DriverStart] = {}
        self.errors: list[tuple[str, BaseException]] = []
        self._running: dict[str, list[str]] = defaultdict(list)   # binary -> instances
        self._next: dict[str, int] = defaultdict(int)
        self._cores: set[int] = set()                # enabled cores seen in records
        self._spawnd: dict[int, Record] = {}         # cores whose spawnd is up
        self._waiting: dict[int, list[DriverStart]] = defaultdict(list)
        self._handled: set[str] = set()
        self._triggers: list[Trigger] = []
        self._stale: RuleWatch | None = None
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    # --- life cycle ------------------------------------------------------------------

    def start(self) -> Kaluga:
        if self._thread is not None:
            raise OctopusError("Kaluga is already started")
        if self.load_database:
            self.db.load()
        else:
            self.db.load_rules()
        self._thread = threading.Thread(target=self._loop, name="kaluga", daemon=True)
        self._thread.start()
        for q in DEVICE_QUERIES:
            self._triggers.append(self.session.watch_existing(q, self._on_device))
        self._stale = self.session.watch_relation("stale_driver", self._on_stale,
                                                  on=Mode.ON_SET, existing=True)
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        for t in self._triggers:
            with contextlib.suppress(OctopusError):
                self.session.remove_trigger(t)
        self._triggers.clear()
        if self._stale is not None:
            with contextlib.suppress(OctopusError):
                self._stale.remove()
            self._stale = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Kaluga:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def idle(self, timeout: float | None = 10.0) -> bool:
        """Wait until every event delivered so far has been handled (False on timeout).

        Drivers waiting for a core's spawnd stay waiting: that is not work to do."""
        self.session.flush(timeout)
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # --- events (dispatcher thread: only queue them) -------------------------------

    def _put(self, item: tuple[str, Any]) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def _on_device(self, event: Event) -> None:
        if event.record is not None:
            self._put(("device", event))

    def _on_spawnd(self, event: Event) -> None:
        if event.record is not None and event.mode & Mode.ON_SET:
            self._put(("spawnd", event.record))

    def _on_stale(self, event: RowEvent) -> None:
        if event.mode is Mode.ON_SET and event.row is not None:
            self._put(("stale", str(event.row[0])))

    # --- Kaluga's thread -----------------------------------------------------------

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            kind, payload = item
            try:
                if kind == "device":
                    self._device(payload)
                elif kind == "spawnd":
                    self._spawnd_up(payload)
                elif kind == "stale":
                    self._stop(payload)
                elif kind == "call":
                    payload()
            except EngineClosed:
                return
            except Exception as e:
                log.exception("kaluga: handling %s failed", kind)
                self.errors.append((kind, e))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in Kaluga's thread after the events queued so far."""
        self._put(("call", fn))

    def observe(self, kind: str, message: str, **details: Any) -> None:
        if self.observer is not None:
            self.observer(kind, message, details)
        log.debug("kaluga %s: %s", kind, message)

    def _device(self, event: Event) -> None:
        record = event.record
        assert record is not None
        name = record.name
        if event.mode & Mode.ON_DEL:
            self._handled.discard(name)
            with contextlib.suppress(NotFound):
                self.session.delete("%n", _assignment(name))
            self.observe("removed", f"{name} removed", record=record, event=event)
            return
        if name in self._handled:
            return
        self._handled.add(name)
        self.observe("trigger", f"{name} set (trigger {event.trigger_id})",
                     record=record, event=event)
        kind = device_kind(name)
        if kind == "processor":
            enabled = record.attributes.get("enabled", True)
            core = record.attributes.get("barrelfish_id")
            if enabled is False or not isinstance(core, int):
                self._decide(name, None, None, None, False, record)
                self.observe("ignore", f"{name}: processor not enabled", record=record)
                return
            self._cores.add(core)
            if core == self.boot_core:
                self._decide(name, None, None, core, False, record)
                self.observe("ignore", f"{name}: core {core} is the boot core, already up",
                             record=record)
                return
        info = self.db.lookup(record)
        if info is None:
            self._decide(name, None, None, None, False, record)
            self.observe("ignore", f"{name}: no driver in the knowledge base", record=record)
            return
        if not info.multi_instance and self._running[info.binary]:
            instance = self._running[info.binary][0]
            core = self.instances[instance].core
            self.session.set("%n { assigned_device: %n, instance: %n }", _assignment(name),
                             name, instance)
            self._decide(name, info.binary, instance, core, False, record)
            self.observe("assign", f"{name} → {instance} (start once: already running)",
                         record=record, instance=instance)
            return
        k = self._next[info.binary]
        self._next[info.binary] = k + 1
        order = DriverStart(info, k, record, self._place(info, k, record))
        self.instances[order.name] = order
        self._running[info.binary].append(order.name)
        self._decide(name, info.binary, order.name, order.core, True, record)
        self._when_core_ready(order)

    def _stop(self, instance: str) -> None:
        """Stop an instance none of whose devices is left (a stale_driver row)."""
        order = self.instances.pop(instance, None)
        if order is None:
            return
        running = self._running[order.driver.binary]
        if instance in running:
            running.remove(instance)
        for assignment in self.session.get_names("_ { instance: %n }", instance):
            with contextlib.suppress(NotFound):
                self.session.delete("%n", assignment)
        self.observe("stop", f"stop {instance}: no device of it is left "
                             f"({order.device.name} was removed)", order=order)
        stop = getattr(self.starter, "stop", None)
        if stop is not None:
            stop(order)
        else:
            with contextlib.suppress(NotFound):
                self.session.delete("%n", instance)

    def _decide(self, name: str, binary: str | None, instance: str | None,
                core: int | None, started: bool, record: Record) -> None:
        self.decisions[name] = Decision(name, binary, instance, core, started)

    def _place(self, info: DriverInfo, k: int, record: Record) -> int:
        if device_kind(record.name) == "processor":
            return self.boot_core       # a core is booted from the boot core
        core = info.core_hint + info.core_offset * k
        if self._cores and core not in self._cores:
            cores = sorted(self._cores)
            core = cores[core % len(cores)]
        return core

    def _when_core_ready(self, order: DriverStart) -> None:
        core = order.core
        if not self.require_spawnd:
            self._start(order)
            return
        if core in self._spawnd:
            self._start(order, self._spawnd[core])
            return
        first = not self._waiting[core]
        self._waiting[core].append(order)
        if not first:
            self.observe("wait", f"{order.name} waits for spawn.{core}", order=order)
            return
        trigger = Trigger(self._on_spawnd, on=Mode.ON_SET, install_if="missing")
        try:
            spawnd = self.session.get("%n", f"spawn.{core}", trigger=trigger)
        except NotFound:       # the trigger is installed and will fire
            self.observe("wait", f"{order.name} waits for spawn.{core} "
                                 f"(trigger {trigger.id} installed)", order=order)
            return
        self._spawnd_up(spawnd, fired=False)

    def _spawnd_up(self, spawnd: Record, fired: bool = True) -> None:
        core = int(spawnd.name.rsplit(".", 1)[1])
        if core in self._spawnd:
            return
        self._spawnd[core] = spawnd
        waiting = self._waiting.pop(core, [])
        if waiting and fired:
            self.observe("trigger", f"{spawnd.name} is up: starting {len(waiting)} "
                                    f"waiting driver(s)", record=spawnd)
        for order in waiting:
            self._start(order, spawnd)

    def _start(self, order: DriverStart, spawnd: Record | None = None) -> None:
        if spawnd is not None:
            order = DriverStart(order.driver, order.instance, order.device, order.core,
                                spawnd)
            self.instances[order.name] = order
        self.observe("start", f"start {order.name} for {order.device.name} "
                              f"on core {order.core}", order=order)
        try:
            self.starter.start(order)
        except EngineClosed:
            raise
        except Exception as e:
            log.exception("kaluga: starting %s failed", order.name)
            self.errors.append((order.name, e))
            return
        if self.after_start is not None:
            self.after_start(order)


def _assignment(device: str) -> str:
    """The record noting that ``device`` was assigned to an instance already running."""
    return f"kaluga.assign.{device}"
