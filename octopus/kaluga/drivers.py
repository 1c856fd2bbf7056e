"""What Kaluga asks the knowledge base, and what it hands to a starter.

The driver database (prolog/device_db.pl) and Kaluga's rules (prolog/kaluga.pl) are
consulted into the engine's knowledge base; :class:`DriverDatabase` asks them, with
constant goal texts and the device's fields as bindings, which driver serves a device
record. No answer means the device is ignored. Kaluga's rules over live records
(prolog/kaluga_rules.pl: which devices no driver serves, which drivers have no device
left) are loaded with ``engine.rules()``, so that Kaluga can watch them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octopus._prolog import runtime
from octopus.engine import Session
from octopus.record import Record

__all__ = ["DEVICE_KINDS", "DriverDatabase", "DriverInfo", "DriverStart", "device_kind",
           "knowledge_base_files", "rules_file"]

#: record-name prefixes of the device records Kaluga watches, and their kinds
DEVICE_KINDS = {
    "hw.acpi": "acpi",
    "hw.processor.": "processor",
    "hw.pci.rootbridge.": "pci_root_bridge",
    "hw.pci.device.": "pci",
    "hw.usb.device.": "usb",
}

_DRIVER = "driver(Binary, Module, Hint, Offset, Multi, Interrupts, Priority)"
_PCI_GOAL = ("find_pci_driver(Platform, pci(Vendor, Device, Function, SubVendor, SubDevice,"
             " Class, Subclass, ProgIf), " + _DRIVER + ")")
_USB_GOAL = ("find_usb_driver(Platform, usb(Class, Subclass, Protocol, Vendor, Product), "
             + _DRIVER + ")")
_KIND_GOAL = "find_device_driver(Platform, Kind, " + _DRIVER + ")"
_CPU_GOAL = "find_device_driver(Platform, cpu(Type), " + _DRIVER + ")"


def knowledge_base_files() -> list[Path]:
    """The knowledge-base files Kaluga consults, in order."""
    base = runtime().prolog_dir
    return [base / "device_db.pl", base / "kaluga.pl"]


def rules_file() -> Path:
    """Kaluga's rules over live records (loaded with ``engine.rules()``)."""
    return runtime().prolog_dir / "kaluga_rules.pl"


def device_kind(name: str) -> str | None:
    """The kind of a device record from its name (None: not a device record)."""
    if name == "hw.acpi":
        return "acpi"
    for prefix, kind in DEVICE_KINDS.items():
        if prefix.endswith(".") and name.startswith(prefix):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class DriverInfo:
    """One driver binary as the knowledge base describes it."""

    binary: str
    module: str
    core_hint: int
    core_offset: int
    multi_instance: bool
    interrupts: tuple[str, ...]
    priority: int
    platform: str

    @classmethod
    def from_solution(cls, s: dict[str, Any], platform: str | None) -> DriverInfo:
        return cls(binary=str(s["Binary"]), module=str(s["Module"]),
                   core_hint=int(s["Hint"]), core_offset=int(s["Offset"]),
                   multi_instance=s["Multi"] in ("true", True),
                   interrupts=tuple(str(i) for i in s["Interrupts"]),
                   priority=int(s["Priority"]),
                   platform=str(s.get("Platform", platform)))


@dataclass(frozen=True, slots=True)
class DriverStart:
    """Kaluga's order to a starter: run instance ``instance`` of ``driver`` for
    ``device`` on ``core``. ``spawnd`` is the core's ``spawn.<core>`` record when
    Kaluga waited for it (None when it did not need to)."""

    driver: DriverInfo
    instance: int
    device: Record
    core: int
    spawnd: Record | None = None

    @property
    def name(self) -> str:
        """The instance's name, also the name of its ``driver.<binary>.<k>`` record."""
        return f"driver.{self.driver.binary}.{self.instance}"


def _int(record: Record, key: str, default: int = -1) -> int:
    value = record.attributes.get(key, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


class DriverDatabase:
    """Kaluga's questions to one engine's knowledge base."""

    def __init__(self, session: Session, platform: str | None = None) -> None:
        self.session = session
        self.platform = platform

    def load(self) -> None:
        """Consult the driver database and Kaluga's rules (again: replaces them)."""
        for path in knowledge_base_files():
            self.session.consult(path, progress=False)
        self.load_rules()

    def load_rules(self) -> None:
        """Load Kaluga's rules over live records (again: replaces them)."""
        self.session.rules(rules_file().read_text(encoding="utf-8"))

    def _ask(self, goal: str, **bindings: object) -> DriverInfo | None:
        if self.platform is not None:
            bindings["Platform"] = self.platform
        solution = self.session.prolog_once(goal, timeout=None, **bindings)
        return None if solution is None else DriverInfo.from_solution(solution, self.platform)

    def lookup(self, record: Record) -> DriverInfo | None:
        """The driver for a device record, or None (no driver: the device is ignored)."""
        kind = device_kind(record.name)
        if kind == "pci":
            return self._ask(_PCI_GOAL, Vendor=_int(record, "vendor"),
                             Device=_int(record, "device_id"),
                             Function=_int(record, "function"),
                             SubVendor=_int(record, "subsystem_vendor"),
                             SubDevice=_int(record, "subsystem_device"),
                             Class=_int(record, "class"), Subclass=_int(record, "subclass"),
                             ProgIf=_int(record, "prog_if"))
        if kind == "usb":
            return self._ask(_USB_GOAL, Class=_int(record, "class"),
                             Subclass=_int(record, "subclass"),
                             Protocol=_int(record, "protocol"),
                             Vendor=_int(record, "vendor"), Product=_int(record, "product"))
        if kind == "processor":
            ptype = record.attributes.get("type", "x86_64")
            return self._ask(_CPU_GOAL, Type=str(ptype))
        if kind in ("acpi", "pci_root_bridge"):
            return self._ask(_KIND_GOAL, Kind=kind)
        return None

    def pci_label(self, vendor: int, device: int, klass: int = -1, subclass: int = -1) -> str:
        """A human name for a PCI function (from pci.ids facts, if loaded)."""
        s = self.session.prolog_once("pci_label(V, D, C, S, Label)", V=vendor, D=device,
                                     C=klass, S=subclass)
        return str(s["Label"]) if s else ""

    def requires(self, binary: str) -> list[str]:
        """Queries of the services ``binary`` waits for before registering its own."""
        return [str(s["Q"]) for s in self.session.prolog("driver_requires(B, Q)", B=binary)]

    def service(self, binary: str) -> str | None:
        """The kind of service ``binary`` registers (None: it registers none)."""
        s = self.session.prolog_once("driver_service(B, S)", B=binary)
        return None if s is None else str(s["S"])
