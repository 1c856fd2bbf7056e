"""A simulated x86 machine for the boot demo: processors, a PCI tree, USB devices.

This is the *hardware*: the ACPI, PCI and USB drivers of the demo read it the way real
drivers read ACPI tables and configuration space, and publish what they find as
Octopus records. Nothing here talks to Octopus. :func:`generate` builds the same machine
for the same arguments (it draws from its own ``random.Random(seed)``).

Every machine has, on bus 0, an onboard NIC (e1000n), an AHCI controller and, when it
has USB devices, an xHCI controller; a DMA engine (eight ioat_dma channels) sits behind
the first bridge. The other cards are drawn from the Barrelfish driver table and spread
over a tree of PCI-to-PCI bridges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Machine", "PciBridge", "PciFunction", "Processor", "UsbDevice", "generate"]


@dataclass(frozen=True, slots=True)
class Processor:
    barrelfish_id: int
    hw_id: int                  # the local APIC id
    enabled: bool = True
    type: str = "x86_64"


@dataclass(frozen=True, slots=True)
class PciFunction:
    bus: int
    device: int
    function: int
    vendor: int
    device_id: int
    klass: int
    subclass: int
    prog_if: int
    description: str

    @property
    def slot(self) -> str:
        return f"{self.bus:02x}:{self.device:02x}.{self.function}"


@dataclass(frozen=True, slots=True)
class PciBridge:
    bus: int
    device: int
    secondary: int
    description: str = "PCI-to-PCI bridge"


@dataclass(frozen=True, slots=True)
class UsbDevice:
    port: int
    klass: int
    subclass: int
    protocol: int
    vendor: int
    product: int
    description: str


@dataclass(frozen=True)
class Machine:
    processors: tuple[Processor, ...]
    root_buses: tuple[int, ...]
    functions: tuple[PciFunction, ...]
    bridges: tuple[PciBridge, ...]
    usb_devices: tuple[UsbDevice, ...]
    seed: int = 0
    _by_bus: dict[int, list[PciFunction | PciBridge]] = field(default_factory=dict,
                                                              repr=False, compare=False)

    def on_bus(self, bus: int) -> list[PciFunction | PciBridge]:
        """What configuration space shows on ``bus``, in slot order."""
        if not self._by_bus:
            pci: tuple[PciFunction | PciBridge, ...] = (*self.functions, *self.bridges)
            for item in pci:
                self._by_bus.setdefault(item.bus, []).append(item)
            for items in self._by_bus.values():
                items.sort(key=lambda i: (i.device, getattr(i, "function", 0)))
        return list(self._by_bus.get(bus, []))


# vendor, device, class, subclass, prog_if, description (all in the Barrelfish table)
_ONBOARD_NIC = (0x8086, 0x10d3, 0x02, 0x00, 0x00, "Intel 82574L Gigabit Ethernet")
_AHCI = (0x8086, 0x2922, 0x01, 0x06, 0x01, "Intel ICH9 AHCI SATA controller")
_XHCI = (0x1b36, 0x000d, 0x0c, 0x03, 0x30, "QEMU xHCI USB host controller")
_CARDS = [
    (0x8086, 0x100e, 0x02, 0x00, 0x00, "Intel 82540EM Gigabit Ethernet"),
    (0x8086, 0x10fb, 0x02, 0x00, 0x00, "Intel 82599 10 Gigabit Ethernet"),
    (0x1924, 0x0803, 0x02, 0x00, 0x00, "Solarflare SFC9020 10G Ethernet"),
    (0x15b3, 0x1003, 0x02, 0x00, 0x00, "Mellanox ConnectX-3"),
    (0x10ec, 0x8029, 0x02, 0x00, 0x00, "Realtek RTL-8029 (NE2000)"),
    (0x8086, 0x225e, 0x0b, 0x40, 0x00, "Intel Xeon Phi coprocessor"),
]
_USB = [
    (0x03, 0x01, 0x01, 0x046d, 0xc31c, "Logitech keyboard"),
    (0x03, 0x01, 0x02, 0x046d, 0xc077, "Logitech optical mouse"),
    (0x08, 0x06, 0x50, 0x0781, 0x5567, "SanDisk Cruzer flash drive"),
    (0x09, 0x00, 0x00, 0x05e3, 0x0608, "Genesys Logic USB hub"),
]


def generate(cores: int = 4, bridges: int = 2, usb: int = 3, seed: int = 0,
             cards: int | None = None) -> Machine:
    """A machine with ``cores`` processors, ``bridges`` PCI-to-PCI bridges, ``usb`` USB
    devices and ``cards`` extra PCI cards (default: one or two per bridge)."""
    if cores < 1 or bridges < 0 or usb < 0:
        raise ValueError("need cores >= 1, bridges >= 0, usb >= 0")
    rng = random.Random(seed)
    apic_step = rng.choice([1, 2])
    processors = tuple(Processor(i, i * apic_step) for i in range(cores))

    functions: list[PciFunction] = []
    bridge_list: list[PciBridge] = []
    next_dev = {0: 0}

    def add(bus: int, spec: tuple[int, int, int, int, int, str], nfunc: int = 1) -> None:
        dev = next_dev[bus]
        next_dev[bus] = dev + 1
        for f in range(nfunc):
            v, d, c, s, p, text = spec
            functions.append(PciFunction(bus, dev, f, v, d + (f if nfunc > 1 else 0),
                                         c, s, p, text + (f" channel {f}" if nfunc > 1
                                                          else "")))

    add(0, _ONBOARD_NIC)
    add(0, _AHCI)
    if usb:
        add(0, _XHCI)
    buses = [0]
    for i in range(bridges):
        parent = rng.choice(buses)
        secondary = len(buses)
        dev = next_dev[parent]
        next_dev[parent] = dev + 1
        bridge_list.append(PciBridge(parent, dev, secondary))
        buses.append(secondary)
        next_dev[secondary] = 0
        if i == 0:
            add(secondary, (0x8086, 0x0e20, 0x08, 0x80, 0x00,
                            "Intel Crystal Beach DMA"), nfunc=8)
    if bridges == 0:
        add(0, (0x8086, 0x0e20, 0x08, 0x80, 0x00, "Intel Crystal Beach DMA"),
            nfunc=8)
    extra = cards if cards is not None else sum(rng.randint(1, 2) for _ in range(bridges))
    for _ in range(extra):
        add(rng.choice(buses), rng.choice(_CARDS))

    catalogue = list(_USB)
    rng.shuffle(catalogue)
    usb_devices = tuple(UsbDevice(port, *catalogue[(port - 1) % len(catalogue)])
                        for port in range(1, usb + 1))
    return Machine(processors, (0,), tuple(functions), tuple(bridge_list), usb_devices, seed)
