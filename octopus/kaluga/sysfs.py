"""Real hardware: this machine's PCI functions through Kaluga, compared with Linux.

``octopus kaluga --sysfs /sys/bus/pci/devices`` reads every PCI function (vendor,
device, class, subsystem ids, and the driver Linux bound: the ``driver`` link), adds it
as an ``hw.pci.device.<n>`` record, lets Kaluga pick a driver from the knowledge base
(platform ``linux``) and prints one line per function:

    <slot> <vvvv>:<dddd> <name> kb=<driver|-> linux=<driver|-> agree|differ|unbound

Names come from the pci.ids database (Debian package ``pci.ids``), loaded into the
knowledge base as facts, when it is there; without it the name is the class code.
Kaluga starts nothing real here: its starter only writes the ``driver.<binary>.<k>``
records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from octopus.engine import Engine, Session
from octopus.kaluga.drivers import DriverDatabase
from octopus.kaluga.kaluga import Kaluga, ThreadStarter

__all__ = ["PCI_IDS_PATHS", "Comparison", "SysfsDevice", "compare", "find_pci_ids",
           "load_pci_ids", "main", "parse_pci_ids", "read_sysfs", "summary"]

PCI_IDS_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids",
                 "/usr/share/pci.ids")

_SLOT = re.compile(r"([0-9a-f]{4,}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])\Z")


@dataclass(frozen=True, slots=True)
class SysfsDevice:
    slot: str                   # 0000:00:01.0
    bus: int
    device: int
    function: int
    vendor: int
    device_id: int
    klass: int
    subclass: int
    prog_if: int
    subsystem_vendor: int
    subsystem_device: int
    linux_driver: str | None


def _hex(path: Path) -> int | None:
    try:
        return int(path.read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def _or_unknown(value: int | None) -> int:
    return -1 if value is None else value


def read_sysfs(root: str | os.PathLike[str]) -> list[SysfsDevice]:
    """The PCI functions under ``root`` (a /sys/bus/pci/devices-like directory), in
    slot order. Entries that are not PCI functions are skipped."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"not a directory: {base}")
    devices = []
    for entry in sorted(base.iterdir(), key=lambda p: p.name):
        m = _SLOT.match(entry.name)
        if not m:
            continue
        vendor, device_id, klass = (_hex(entry / f) for f in ("vendor", "device", "class"))
        if vendor is None or device_id is None or klass is None:
            continue
        link = entry / "driver"
        driver = os.path.basename(os.readlink(link)) if link.is_symlink() else None
        devices.append(SysfsDevice(
            entry.name, int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)),
            vendor, device_id, (klass >> 16) & 0xff, (klass >> 8) & 0xff, klass & 0xff,
            _or_unknown(_hex(entry / "subsystem_vendor")),
            _or_unknown(_hex(entry / "subsystem_device")), driver))
    return devices


def find_pci_ids() -> Path | None:
    for candidate in PCI_IDS_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


Rows = dict[str, list[tuple[object, ...]]]


def parse_pci_ids(path: str | os.PathLike[str]) -> Rows:
    """pci.ids as fact rows: pci_vendor_name(V, Name), pci_device_name(V, D, Name),
    pci_subsystem_name(V, D, SubV, SubD, Name), pci_class_name(C, S, Name) (S = -1 for
    the class itself)."""
    rows: Rows = {"pci_vendor_name": [], "pci_device_name": [], "pci_subsystem_name": [],
                  "pci_class_name": []}
    vendor = device = klass = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            line = line.rstrip("\n")
            try:
                if line.startswith("C "):
                    code, _, name = line[2:].partition("  ")
                    klass, vendor = int(code, 16), None
                    rows["pci_class_name"].append((klass, -1, name.strip()))
                elif line.startswith("\t\t"):
                    if vendor is not None and device is not None:
                        ids, _, name = line[2:].partition("  ")
                        sv, sd = (int(x, 16) for x in ids.split())
                        rows["pci_subsystem_name"].append((vendor, device, sv, sd,
                                                           name.strip()))
                elif line.startswith("\t"):
                    code, _, name = line[1:].partition("  ")
                    if vendor is not None:
                        device = int(code, 16)
                        rows["pci_device_name"].append((vendor, device, name.strip()))
                    elif klass is not None:
                        rows["pci_class_name"].append((klass, int(code, 16), name.strip()))
                else:
                    code, _, name = line.partition("  ")
                    vendor, device, klass = int(code, 16), None, None
                    rows["pci_vendor_name"].append((vendor, name.strip()))
            except ValueError:
                continue            # a malformed line is skipped, not fatal
    return rows


def load_pci_ids(session: Session, path: str | os.PathLike[str], *,
                 progress: bool | None = None) -> int:
    """Load pci.ids into the knowledge base (with a progress bar on a terminal, or
    when ``progress`` is True); return the number of facts."""
    rows = parse_pci_ids(path)
    total = sum(len(r) for r in rows.values())
    kb = session.kb
    show = progress if progress is not None else os.isatty(2)
    if not show:
        return sum(kb.add_rows(pred, r, progress=False) for pred, r in rows.items())
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    done = 0
    with Progress(TextColumn("[bold blue]pci.ids → knowledge base"), BarColumn(),
                  MofNCompleteColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("load", total=total)
        for pred, r in rows.items():
            base = done

            def report(n: int, _total: int, base: int = base) -> None:
                bar.update(task, completed=base + n)

            done += kb.add_rows(pred, r, progress=report)
    return done


@dataclass(frozen=True, slots=True)
class Comparison:
    device: SysfsDevice
    name: str
    kb: str | None
    linux: str | None

    @property
    def verdict(self) -> str:
        if self.linux is None:
            return "unbound"
        return "agree" if self.kb == self.linux else "differ"

    def line(self) -> str:
        d = self.device
        return (f"{d.slot} {d.vendor:04x}:{d.device_id:04x} {self.name or '?'} "
                f"kb={self.kb or '-'} linux={self.linux or '-'} {self.verdict}")


def compare(devices: list[SysfsDevice], *, engine: Engine | None = None,
            pci_ids: str | os.PathLike[str] | None = None, progress: bool | None = None,
            timeout: float = 30.0) -> list[Comparison]:
    """Run the devices through Kaluga (platform linux) and compare with Linux."""
    own = engine is None
    e = engine if engine is not None else Engine()
    try:
        if pci_ids is not None:
            load_pci_ids(e, pci_ids, progress=progress)
        kaluga = Kaluga(e, starter=ThreadStarter(e), platform="linux", require_spawnd=False)
        with kaluga:
            for i, d in enumerate(devices):
                e.set("%n { bus: %d, device: %d, function: %d, vendor: %d, device_id: %d, "
                      "class: %d, subclass: %d, prog_if: %d, subsystem_vendor: %d, "
                      "subsystem_device: %d, slot: %s }", f"hw.pci.device.{i}", d.bus,
                      d.device, d.function, d.vendor, d.device_id, d.klass, d.subclass,
                      d.prog_if, d.subsystem_vendor, d.subsystem_device, d.slot)
            kaluga.idle(timeout)
        db = DriverDatabase(e, "linux")
        out = []
        for i, d in enumerate(devices):
            decision = kaluga.decisions.get(f"hw.pci.device.{i}")
            name = (db.pci_label(d.vendor, d.device_id, d.klass, d.subclass)
                    or f"class {d.klass:02x}{d.subclass:02x}{d.prog_if:02x}")
            out.append(Comparison(d, name, decision.driver if decision else None,
                                  d.linux_driver))
        return out
    finally:
        if own:
            e.close()


def summary(results: list[Comparison]) -> str:
    counts = {v: sum(1 for r in results if r.verdict == v)
              for v in ("agree", "differ", "unbound")}
    return (f"{len(results)} PCI functions: {counts['agree']} agree, {counts['differ']} "
            f"differ, {counts['unbound']} unbound (no Linux driver)")


def main(sysfs: str, pci_ids: str | None, no_names: bool,
         echo: Callable[[str], None] = print) -> int:
    """``octopus kaluga --sysfs``: 0 when no bound device differs, 1 otherwise."""
    try:
        devices = read_sysfs(sysfs)
    except OSError as e:
        echo(f"octopus kaluga: {e}")
        return 2
    ids = None if no_names else (Path(pci_ids) if pci_ids else find_pci_ids())
    if ids is None and not no_names:
        echo("octopus kaluga: no pci.ids found (install the pci.ids package); "
             "showing class names")
    results = compare(devices, pci_ids=ids)
    for r in results:
        echo(r.line())
    echo(summary(results))
    return 1 if any(r.verdict == "differ" for r in results) else 0
