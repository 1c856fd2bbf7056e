"""The boot demo: a simulated x86 machine boots with no hard-coded ordering.

The paper's scenario (section 4.2), every participant a thread of its own that talks
to the others only through the Octopus API:

1. The boot core (``bsp``) adds the ``hw.acpi`` record, starts its spawnd and the boot
   services. Kaluga, watching device records, starts the ACPI driver (once
   ``spawn.0`` is there).
2. ACPI reads the (simulated) tables, adds ``hw.processor.<n>`` and
   ``hw.pci.rootbridge.<n>`` records, registers ``acpi`` and enters ``barrier.acpi``
   with Kaluga, which so knows that every core has been reported.
3. Kaluga starts a CPU driver per enabled core; each boots its core, whose spawnd
   registers ``spawn.<n>``. When all enabled cores have one, Kaluga sets
   ``all_spawnds_up``.
4. The PCI driver (started for the root bridge) waits for ``all_spawnds_up``,
   enumerates the bus tree and adds ``hw.pci.device.<n>`` records; Kaluga starts their
   drivers on the cores the knowledge base names; the USB host controller's driver
   adds ``hw.usb.device.<n>`` records in turn.
5. Drivers wait by name for the services they need (from the knowledge base) before
   registering their own; the boot services (netd, vfs, dma_mgr) wait for theirs.
6. Devices without a driver are a derived relation (``unbound_device/1``,
   prolog/kaluga_rules.pl): the demo watches it from the start and reports every device
   that was ever in it and those still in it at the end (none, when the boot worked).

Time: each participant keeps a simulated clock (see :mod:`octopus.kaluga.timeline`),
stamped on every record it writes as ``t`` (microseconds). With the same seed the
machine, every decision and the timeline are the same on every run.
"""

from __future__ import annotations

import contextlib
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from octopus.engine import Engine, Session
from octopus.errors import NotFound, OctopusError, QueryError, WaitTimeout
from octopus.events import Event, Mode, Trigger
from octopus.kaluga.drivers import DriverDatabase, DriverStart
from octopus.kaluga.kaluga import Kaluga, ThreadStarter
from octopus.kaluga.machine import Machine, PciBridge, PciFunction, generate
from octopus.kaluga.timeline import Timeline
from octopus.record import Record, natural_key
from octopus.rules import RowEvent, RuleWatch

__all__ = ["Boot", "BootConfig", "BootReport", "DeviceRow", "run_boot"]

_KALUGA_COST = 20          # simulated µs Kaluga needs to decide and start a driver
_SPAWN_COST = (5, 20)      # simulated µs from Kaluga's start to the driver's first step


@dataclass(frozen=True)
class BootConfig:
    cores: int = 4
    bridges: int = 2
    usb: int = 3
    seed: int = 0
    cards: int | None = None
    timeout: float = 30.0      # wall-clock bound on every wait


@dataclass(frozen=True)
class DeviceRow:
    """One line of the result table."""

    record: str
    where: str                  # PCI slot or USB port
    ids: str                    # vvvv:dddd
    description: str
    driver: str | None
    instance: str | None
    core: int | None
    service: str | None


@dataclass
class BootReport:
    machine: Machine
    timeline: Timeline
    rows: list[DeviceRow]
    cores_up: list[int]
    services: list[str]
    problems: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    #: devices that were rows of unbound_device/1 at some point (waiting for a driver)
    unbound_seen: list[str] = field(default_factory=list)
    #: the rows of unbound_device/1 at the end, as the watch delivered them
    unbound: list[str] = field(default_factory=list)
    simulated_us: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _natural(record: Record) -> Any:
    return natural_key(record.name)


def _t(record: Record | None) -> int:
    if record is None:
        return 0
    value = record.attributes.get("t", 0)
    return value if isinstance(value, int) else 0


_KEY = re.compile(r"[a-z][A-Za-z0-9._-]*\Z")


def record_text(attrs: dict[str, Any]) -> tuple[str, list[Any]]:
    """``"%n { k: %d, ... }"`` and its parameters: keys are checked, values are data."""
    parts, params = [], []
    for key, value in sorted(attrs.items()):
        if not _KEY.match(key):
            raise QueryError(f"not an attribute key: {key!r}")
        if isinstance(value, bool):
            spec = "%b"
        elif isinstance(value, int):
            spec = "%d"
        elif isinstance(value, float):
            spec = "%f"
        elif isinstance(value, str):
            spec = "%s"
        else:
            raise QueryError(f"attribute {key}: cannot store a {type(value).__name__}")
        parts.append(f"{key}: {spec}")
        params.append(value)
    return "%n { " + ", ".join(parts) + " }", params


def _passed(ok: bool, what: str, timeout: float | None) -> None:
    """Recipes report a timeout by returning False; the boot treats it as a failure."""
    if not ok:
        raise WaitTimeout(f"{what}: not passed within {timeout} s")


class Participant:
    """One thread's view: its session, its simulated clock and its entries."""

    def __init__(self, boot: Boot, who: str, session: Session, t: int) -> None:
        self.boot = boot
        self.who = who
        self.session = session
        self.t = t
        self.rng = random.Random(f"{boot.config.seed}/{who}")
        self.names = session.names

    def log(self, kind: str, text: str) -> None:
        self.boot.timeline.add(self.t, self.who, kind, text)

    def work(self, lo: int, hi: int, text: str | None = None) -> None:
        if text:
            self.log("work", text)
        self.t += self.rng.randint(lo, hi)

    def see(self, record: Record) -> None:
        self.t = max(self.t, _t(record))

    def record(self, name: str, *, sequential: bool = False, **attrs: Any) -> Record:
        text, params = record_text({**attrs, "t": self.t})
        rec = self.session.set(text, name, *params, sequential=sequential)
        self.log("record", f"adds {rec.name}")
        return rec

    def register(self, name: str, **attrs: Any) -> Record:
        rec = self.names.register(name, t=self.t, **attrs)
        self.log("register", f"registers {name}")
        return rec

    def wait(self, q: str, *, service: bool = True) -> Record:
        """Wait for a registered service (the name service) or, with ``service=False``,
        for any record (``wait_for``)."""
        self.log("wait", f"waits for {q}")
        timeout = self.boot.config.timeout
        rec = (self.names.wait(q, timeout=timeout) if service
               else self.session.wait_for(q, timeout=timeout))
        self.see(rec)
        self.log("trigger", f"{q} → {rec.name} is there")
        self.t += self.rng.randint(2, 5)          # resuming costs a little
        return rec


class Boot:
    """One run of the demo on a fresh engine (or the one given)."""

    def __init__(self, config: BootConfig | None = None, engine: Engine | None = None) -> None:
        self.config = config or BootConfig()
        self.machine = generate(self.config.cores, self.config.bridges, self.config.usb,
                                self.config.seed, self.config.cards)
        self.engine = engine if engine is not None else Engine()
        self._own_engine = engine is None
        self.timeline = Timeline()
        self.db = DriverDatabase(self.engine, "barrelfish")
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._expected_cores: set[int] = set()
        self._spawnds: dict[int, Record] = {}
        self._all_up = False
        self._sessions: list[Session] = []
        self._spawn_watch: Trigger | None = None
        self._unbound_watch: RuleWatch | None = None
        self._unbound: dict[str, None] = {}        # insertion-ordered set
        self._unbound_seen: dict[str, None] = {}
        self.starter = ThreadStarter(self.engine, {
            "acpi": self._acpi, "cpu": self._cpu, "pci": self._pci,
            "usb_manager": self._usb_manager,
        }, fallback=self._device_driver, on_error=self._driver_failed)
        self.kaluga = Kaluga(self.engine, starter=self.starter, platform="barrelfish",
                             observer=self._kaluga_saw, after_start=self._after_start)

    # --- threads -------------------------------------------------------------------

    def _spawn(self, who: str, target: Any, *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            except OctopusError as e:
                self._fail(f"{who}: {type(e).__name__}: {e}")
            except Exception as e:
                self._fail(f"{who}: {type(e).__name__}: {e}")

        thread = threading.Thread(target=run, name=who, daemon=True)
        with self._lock:
            self.threads.append(thread)
            thread.start()

    def _fail(self, message: str) -> None:
        with self._lock:
            self.errors.append(message)

    def _driver_failed(self, order: DriverStart, e: BaseException) -> None:
        self._fail(f"{order.name}: {type(e).__name__}: {e}")

    def _participant(self, who: str, session: Session, t: int) -> Participant:
        p = Participant(self, who, session, t)
        p.t += p.rng.randint(*_SPAWN_COST)       # creating the thread (a domain) costs
        return p

    # --- the boot core -------------------------------------------------------------

    def _bsp(self) -> None:
        with self.engine.session() as session:
            p = self._participant("bsp", session, 0)
            p.work(600, 900, "CPU driver up on core 0 (BIOS → bootloader → kernel)")
            p.record("hw.acpi", rsdp=0xE0000)
            self._spawn("spawnd.0", self._spawnd, 0, p.t)
            for s in self.engine.prolog("boot_service(Name, Requires)"):
                self._spawn(str(s["Name"]), self._boot_service, str(s["Name"]),
                            str(s["Requires"]), p.t)

    def _lasting_session(self) -> Session:
        """A session that stays open until the boot ends: the service it registers (an
        ephemeral name) lives on after the thread that started it has returned."""
        session = self.engine.session()
        with self._lock:
            self._sessions.append(session)
        return session

    def _spawnd(self, core: int, t: int) -> None:
        session = self._lasting_session()
        p = self._participant(f"spawnd.{core}", session, t)
        p.work(300, 700, f"spawnd starts on core {core}")
        p.register(f"spawn.{core}", core=core, service="spawnd")

    def _boot_service(self, name: str, requires: str, t: int) -> None:
        p = self._participant(name, self._lasting_session(), t)
        p.wait(requires)
        p.work(500, 2000, f"{name} starts")
        p.register(name, service=name, uses=requires)

    # --- Kaluga's side of the boot ------------------------------------------------

    def _start_time(self, order: DriverStart) -> int:
        return max(_t(order.device), _t(order.spawnd)) + _KALUGA_COST

    def _kaluga_saw(self, kind: str, message: str, details: Any) -> None:
        record: Record | None = details.get("record")
        order: DriverStart | None = details.get("order")
        if kind == "start" and order is not None:
            t = self._start_time(order)
            if order.spawnd is not None and _t(order.spawnd) > _t(order.device):
                self.timeline.add(_t(order.device) + 1, "kaluga", "wait",
                                  f"{order.name} must wait for {order.spawnd.name} "
                                  f"(trigger on spawn.{order.core})")
                self.timeline.add(_t(order.spawnd), "kaluga", "trigger",
                                  f"{order.spawnd.name} set: trigger fires")
            self.timeline.add(t, "kaluga", "start", message)
        elif kind in ("trigger", "ignore", "assign") and record is not None \
                and record.name.startswith("hw."):
            self.timeline.add(_t(record), "kaluga", kind, message)

    def _after_start(self, order: DriverStart) -> None:
        """Runs in Kaluga's thread after each start: the ACPI barrier and, after it,
        counting spawnds (the rest of Kaluga's job in the paper's boot sequence)."""
        if order.driver.binary != "acpi":
            return
        t = self._start_time(order)
        barrier = self.engine.barrier("barrier.acpi", 2)
        self.timeline.add(t + 1, "kaluga", "barrier", "enters barrier.acpi (2 parties)")
        _passed(barrier.enter(timeout=self.config.timeout), "enter barrier.acpi",
                self.config.timeout)
        acpi = self.engine.names.lookup("acpi")
        self.timeline.add(max(t + 1, _t(acpi)), "kaluga", "barrier",
                          "barrier.acpi passed: every core and root bridge is reported")
        _passed(barrier.leave(timeout=self.config.timeout), "leave barrier.acpi",
                self.config.timeout)
        cores = self.engine.get_all(r"r'^hw\.processor\.' { enabled: true }")
        self._expected_cores = {int(r["barrelfish_id"]) for r in cores}
        self._spawn_watch = self.engine.watch_existing(r"r'^spawn\.'", self._on_spawnd,
                                                       on=Mode.ON_SET)

    def _on_spawnd(self, event: Event) -> None:
        if event.record is not None:
            record = event.record
            self.kaluga.call_soon(lambda: self._count_spawnd(record))

    def _count_spawnd(self, spawnd: Record) -> None:
        core = spawnd.attributes.get("core")
        if not isinstance(core, int) or self._all_up:
            return
        self._spawnds[core] = spawnd
        if self._expected_cores <= set(self._spawnds):
            self._all_up = True
            t = max(_t(r) for r in self._spawnds.values()) + _KALUGA_COST
            n = len(self._expected_cores)
            self.engine.set("all_spawnds_up { cores: %d, t: %d }", n, t)
            self.timeline.add(t, "kaluga", "record",
                              f"all {n} spawnds are up: adds all_spawnds_up")

    # --- drivers (run by the ThreadStarter, each in its own thread) -----------------

    def _who(self, order: DriverStart) -> str:
        return order.name.removeprefix("driver.")

    def _acpi(self, session: Session, order: DriverStart) -> None:
        p = self._participant(self._who(order), session, self._start_time(order))
        p.work(1500, 3000, "reads the MADT")
        for proc in self.machine.processors:
            p.record(f"hw.processor.{proc.barrelfish_id}", enabled=proc.enabled,
                     barrelfish_id=proc.barrelfish_id, hw_id=proc.hw_id, type=proc.type)
            p.work(50, 120)
        p.work(800, 1500, "reads the MCFG and the root bridges' _CRS")
        for i, bus in enumerate(self.machine.root_buses):
            p.record(f"hw.pci.rootbridge.{i}", bus=bus, segment=0)
        p.register("acpi", service="acpi")
        barrier = session.barrier("barrier.acpi", 2)
        p.log("barrier", "enters barrier.acpi")
        _passed(barrier.enter(timeout=self.config.timeout), "enter barrier.acpi",
                self.config.timeout)
        _passed(barrier.leave(timeout=self.config.timeout), "leave barrier.acpi",
                self.config.timeout)

    def _cpu(self, session: Session, order: DriverStart) -> None:
        core = order.device["barrelfish_id"]
        assert isinstance(core, int)
        p = self._participant(self._who(order), session, self._start_time(order))
        p.work(2000, 6000, f"boots core {core} (INIT-SIPI-SIPI, CPU driver, monitor)")
        self._spawn(f"spawnd.{core}", self._spawnd, core, p.t)

    def _pci(self, session: Session, order: DriverStart) -> None:
        p = self._participant(self._who(order), session, self._start_time(order))
        p.wait("all_spawnds_up", service=False)
        for bridge in session.get_all(r"r'^hw\.pci\.rootbridge\.'"):
            p.see(bridge)
            bus = bridge["bus"]
            assert isinstance(bus, int)
            p.log("work", f"enumerates {bridge.name} (bus {bus})")
            self._enumerate(p, bus)
        p.register("pci", service="pci")

    def _enumerate(self, p: Participant, bus: int) -> None:
        for item in self.machine.on_bus(bus):
            p.work(80, 200)
            if isinstance(item, PciBridge):
                p.record("hw.pci.bridge.", sequential=True, bus=item.bus, device=item.device,
                         secondary=item.secondary)
                self._enumerate(p, item.secondary)
            elif isinstance(item, PciFunction):
                p.record("hw.pci.device.", sequential=True, bus=item.bus,
                         device=item.device, function=item.function, vendor=item.vendor,
                         device_id=item.device_id, **{"class": item.klass},
                         subclass=item.subclass, prog_if=item.prog_if)

    def _device_driver(self, session: Session, order: DriverStart) -> Participant:
        p = self._participant(self._who(order), session, self._start_time(order))
        for q in self.db.requires(order.driver.binary):
            p.wait(q)
        p.work(1000, 6000, f"initialises {order.device.name} on core {order.core}")
        service = self.db.service(order.driver.binary) or order.driver.binary
        p.register(self._who(order), service=service, device=order.device.name,
                   core=order.core)
        return p

    def _usb_manager(self, session: Session, order: DriverStart) -> None:
        p = self._device_driver(session, order)
        for dev in self.machine.usb_devices:
            p.work(300, 900, f"resets port {dev.port}")
            p.record("hw.usb.device.", sequential=True, port=dev.port, vendor=dev.vendor,
                     product=dev.product, **{"class": dev.klass}, subclass=dev.subclass,
                     protocol=dev.protocol, controller=self._who(order))

    # --- the run -------------------------------------------------------------------

    def run(self) -> BootReport:
        start = time.perf_counter()
        try:
            self.kaluga.start()
            self._unbound_watch = self.engine.watch_relation(
                "unbound_device", self._on_unbound, existing=True)
            self._spawn("bsp", self._bsp)
            self._wait_until_quiet()
            report = self._report()
        finally:
            self.kaluga.stop()
            if self._unbound_watch is not None and not self.engine.closed:
                with contextlib.suppress(OctopusError):
                    self._unbound_watch.remove()
            if self._spawn_watch is not None and not self.engine.closed:
                with contextlib.suppress(OctopusError):
                    self.engine.remove_trigger(self._spawn_watch)
            self.starter.close()
            for s in self._sessions:
                s.close()
            if self._own_engine:
                self.engine.close()
        report.wall_seconds = time.perf_counter() - start
        return report

    def _on_unbound(self, event: RowEvent) -> None:
        if event.row is None:
            return
        device = str(event.row[0])
        with self._lock:
            if event.mode is Mode.ON_SET:
                self._unbound[device] = None
                self._unbound_seen[device] = None
            elif event.mode is Mode.ON_DEL:
                self._unbound.pop(device, None)

    def _wait_until_quiet(self) -> None:
        """Until every thread has finished and Kaluga has nothing left to do (threads
        start threads, so look again until no new one appeared)."""
        deadline = time.monotonic() + self.config.timeout
        seen = -1
        while time.monotonic() < deadline:
            with self._lock:
                threads = list(self.threads)
            count = len(threads) + len(self.starter.threads)
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self.starter.join(max(0.0, deadline - time.monotonic()))
            self.kaluga.idle(max(0.0, deadline - time.monotonic()))
            with self._lock:
                now = len(self.threads) + len(self.starter.threads)
            if now == count == seen:
                return
            seen = now
        self._fail(f"the boot did not settle within {self.config.timeout} s")

    def _report(self) -> BootReport:
        e = self.engine
        rows: list[DeviceRow] = []
        for rec in sorted(e.get_all(r"r'^hw\.pci\.device\.'"), key=_natural):
            label = (f"{rec['bus']:02x}:{rec['device']:02x}.{rec['function']}")
            func = next((f for f in self.machine.functions if f.slot == label), None)
            rows.append(self._row(rec, label, f"{rec['vendor']:04x}:{rec['device_id']:04x}",
                                  func.description if func else "?"))
        for rec in sorted(e.get_all(r"r'^hw\.usb\.device\.'"), key=_natural):
            dev = next((d for d in self.machine.usb_devices if d.port == rec["port"]), None)
            rows.append(self._row(rec, f"usb port {rec['port']}",
                                  f"{rec['vendor']:04x}:{rec['product']:04x}",
                                  dev.description if dev else "?"))
        cores_up = sorted(int(r["core"]) for r in e.get_all(r"r'^spawn\.'")
                          if isinstance(r["core"], int))
        services = sorted(e.get_names("_ { service: _ }"), key=natural_key)
        report = BootReport(self.machine, self.timeline, rows, cores_up, services,
                            problems=list(self.errors))
        report.problems += [f"kaluga: {k}: {err}" for k, err in self.kaluga.errors]
        e.flush(self.config.timeout)
        with self._lock:
            report.unbound = sorted(self._unbound, key=natural_key)
            report.unbound_seen = sorted(self._unbound_seen, key=natural_key)
        report.simulated_us = max((x.t for x in self.timeline.entries()), default=0)
        self._check(report)
        return report

    def _row(self, rec: Record, where: str, ids: str, description: str) -> DeviceRow:
        decision = self.kaluga.decisions.get(rec.name)
        service = None
        if decision is not None and decision.instance is not None:
            name = decision.instance.removeprefix("driver.")
            service = name if self.engine.exists("%n", name) else None
        return DeviceRow(rec.name, where, ids, description,
                         decision.driver if decision else None,
                         decision.instance if decision else None,
                         decision.core if decision else None, service)

    def _check(self, report: BootReport) -> None:
        """The end state the demo promises (and the tests check)."""
        m = self.machine
        want_cores = sorted(p.barrelfish_id for p in m.processors if p.enabled)
        if report.cores_up != want_cores:
            report.problems.append(f"cores up {report.cores_up}, expected {want_cores}")
        if len(report.rows) != len(m.functions) + len(m.usb_devices):
            report.problems.append(f"{len(report.rows)} device records, expected "
                                   f"{len(m.functions) + len(m.usb_devices)}")
        for row in report.rows:
            if row.driver is None or row.service is None:
                report.problems.append(f"{row.record} ({row.description}): driver "
                                       f"{row.driver}, service {row.service}")
        for s in self.engine.prolog("boot_service(Name, _)"):
            try:
                self.engine.get("%n", str(s["Name"]))
            except NotFound:
                report.problems.append(f"boot service {s['Name']} never registered")
        without = sorted((r.record for r in report.rows if r.instance is None),
                         key=natural_key)
        if report.unbound != without:
            report.problems.append(f"unbound_device/1 says {report.unbound}, the decisions "
                                   f"say {without}")
        try:
            self.engine.get("all_spawnds_up")
        except NotFound:
            report.problems.append("all_spawnds_up was never set")


def run_boot(config: BootConfig | None = None) -> BootReport:
    """Boot a simulated machine on a fresh engine and report what happened."""
    return Boot(config).run()
