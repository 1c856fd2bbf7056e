"""Kaluga: device records in, drivers started (once, on the right core, when it is up)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import octopus
from octopus.kaluga import DriverStart, Kaluga, ThreadStarter

E10K = "vendor: 0x8086, device_id: 0x10fb, class: 2, subclass: 0, prog_if: 0"
MLX4 = "vendor: 0x15b3, device_id: 0x1003, class: 2, subclass: 0, prog_if: 0"
UNKNOWN = "vendor: 0xabcd, device_id: 0x0001, class: 0xff, subclass: 0, prog_if: 0"


class RecordingStarter:
    """A real starter that only records its orders (and the thread it ran in)."""

    def __init__(self) -> None:
        self.orders: list[DriverStart] = []
        self.lock = threading.Lock()

    def start(self, order: DriverStart) -> None:
        with self.lock:
            self.orders.append(order)

    def names(self) -> list[str]:
        with self.lock:
            return [o.name for o in self.orders]


def pci(engine: octopus.Engine, n: int, ids: str, function: int = 0) -> None:
    engine.set(f"hw.pci.device.{n} {{ bus: 0, device: {n}, function: {function}, {ids} }}")


def spawnds(engine: octopus.Engine, *cores: int) -> None:
    for c in cores:
        engine.set("%n { core: %d }", f"spawn.{c}", c)


def test_devices_before_and_after_start(engine: octopus.Engine) -> None:
    """No device missed, none handled twice, even while devices arrive during start."""
    spawnds(engine, *range(2, 122))     # e10k instance k runs on core 2 + k
    for n in range(40):
        pci(engine, n, E10K)
    starter = RecordingStarter()
    kaluga = Kaluga(engine, starter=starter)
    adder = threading.Thread(target=lambda: [pci(engine, n, E10K) for n in range(40, 100)])
    adder.start()
    kaluga.start()
    adder.join()
    for n in range(100, 120):
        pci(engine, n, E10K)
    for n in range(0, 120, 7):        # updates of known devices start nothing new
        pci(engine, n, E10K)
    assert kaluga.idle()
    kaluga.stop()
    devices = Counter(o.device.name for o in starter.orders)
    assert set(devices) == {f"hw.pci.device.{n}" for n in range(120)}
    assert max(devices.values()) == 1
    assert sorted(o.instance for o in starter.orders) == list(range(120))


def test_start_once_and_assignment(engine: octopus.Engine) -> None:
    spawnds(engine, 0, 3)
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter) as kaluga:
        pci(engine, 0, MLX4)
        pci(engine, 1, MLX4)
        assert kaluga.idle()
    assert starter.names() == ["driver.mlx4.0"]
    d0, d1 = kaluga.decisions["hw.pci.device.0"], kaluga.decisions["hw.pci.device.1"]
    assert (d0.instance, d0.core, d0.started) == ("driver.mlx4.0", 3, True)
    assert (d1.instance, d1.core, d1.started) == ("driver.mlx4.0", 3, False)


def test_multi_instance_placement(engine: octopus.Engine) -> None:
    """ioat_dma: core hint 0, offset 1; e10k: hint 2, offset 1."""
    spawnds(engine, *range(12))
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter) as kaluga:
        for f in range(8):
            pci(engine, f, f"vendor: 0x8086, device_id: {0x0e20 + f}, class: 8, subclass: 0x80,"
                           " prog_if: 0", function=f)
        for n in range(8, 11):
            pci(engine, n, E10K)
        assert kaluga.idle()
    placed = {o.name: o.core for o in starter.orders}
    assert [placed[f"driver.ioat_dma.{k}"] for k in range(8)] == list(range(8))
    assert [placed[f"driver.e10k.{k}"] for k in range(3)] == [2, 3, 4]


def test_placement_wraps_around_the_known_cores(engine: octopus.Engine) -> None:
    spawnds(engine, 0, 1, 2)
    for c in range(3):
        engine.set("%n { enabled: true, barrelfish_id: %d, hw_id: %d, type: x86_64 }",
                   f"hw.processor.{c}", c, c)
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter) as kaluga:
        for n in range(4):
            pci(engine, n, E10K)
        assert kaluga.idle()
    e10k = [o.core for o in starter.orders if o.driver.binary == "e10k"]
    assert e10k == [2, 0, 1, 2]     # 2, 3, 4, 5 modulo three cores


def test_waits_for_the_cores_spawnd(engine: octopus.Engine) -> None:
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter) as kaluga:
        pci(engine, 0, E10K)          # instance 0 goes to core 2
        pci(engine, 1, E10K)          # instance 1 to core 3
        pci(engine, 2, MLX4)          # core 3 as well
        assert kaluga.idle()
        assert starter.names() == []
        spawnds(engine, 3)
        assert kaluga.idle()
        assert sorted(starter.names()) == ["driver.e10k.1", "driver.mlx4.0"]
        assert all(o.spawnd is not None and o.spawnd.name == "spawn.3"
                   for o in starter.orders)
        spawnds(engine, 2)
        assert kaluga.idle()
        assert sorted(starter.names()) == ["driver.e10k.0", "driver.e10k.1", "driver.mlx4.0"]
        spawnds(engine, 2)            # a spawnd record set again starts nothing twice
        assert kaluga.idle()
        assert len(starter.orders) == 3


def test_ignored_and_removed_devices(engine: octopus.Engine) -> None:
    spawnds(engine, 2, 3)
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter) as kaluga:
        pci(engine, 0, UNKNOWN)
        pci(engine, 1, E10K)
        assert kaluga.idle()
        assert kaluga.decisions["hw.pci.device.0"].driver is None
        engine.delete("hw.pci.device.1")
        pci(engine, 1, E10K)          # after a delete the record is a new device
        assert kaluga.idle()
    assert starter.names() == ["driver.e10k.0", "driver.e10k.1"]


def test_processors_acpi_and_usb(engine: octopus.Engine) -> None:
    spawnds(engine, 0)
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter, platform="barrelfish") as kaluga:
        engine.set("hw.acpi { rsdp: 1 }")
        engine.set("hw.processor.0 { enabled: true, barrelfish_id: 0, hw_id: 0, type: x86_64 }")
        engine.set("hw.processor.1 { enabled: true, barrelfish_id: 1, hw_id: 2, type: x86_64 }")
        engine.set("hw.processor.2 { enabled: false, barrelfish_id: 2, hw_id: 4, type: x86_64 }")
        engine.set("hw.pci.rootbridge.0 { bus: 0 }")
        engine.set("hw.usb.device.0 { class: 3, subclass: 1, protocol: 1, vendor: 1, product: 2 }")
        assert kaluga.idle()
    assert starter.names() == ["driver.acpi.0", "driver.cpu.0", "driver.pci.0",
                               "driver.usb_keyboard.0"]
    cpu = starter.orders[1]
    assert cpu.device.name == "hw.processor.1" and cpu.core == 0   # booted from core 0
    assert kaluga.decisions["hw.processor.0"].driver is None       # the boot core
    assert kaluga.decisions["hw.processor.2"].driver is None       # disabled


def test_linux_platform(engine: octopus.Engine) -> None:
    starter = RecordingStarter()
    with Kaluga(engine, starter=starter, platform="linux", require_spawnd=False) as kaluga:
        pci(engine, 0, "vendor: 0x1af4, device_id: 0x1041, class: 2, subclass: 0, prog_if: 0")
        pci(engine, 1, "vendor: 0x8086, device_id: 0x100e, class: 2, subclass: 0, prog_if: 0")
        pci(engine, 2, "vendor: 0x144d, device_id: 0xa808, class: 1, subclass: 8, prog_if: 2")
        assert kaluga.idle()
    assert starter.names() == ["driver.virtio-pci.0", "driver.e1000.0", "driver.nvme.0"]


def test_thread_starter_and_recursive_discovery(engine: octopus.Engine) -> None:
    """A bus driver adds device records; Kaluga starts their drivers in turn."""
    spawnds(engine, *range(5))
    ran: list[tuple[str, str]] = []

    def bus_driver(session: octopus.Session, order: DriverStart) -> None:
        ran.append((order.name, threading.current_thread().name))
        for n in range(3):
            session.set("hw.pci.device. { bus: 1, device: %d, function: 0, vendor: 0x8086, "
                        "device_id: 0x10fb, class: 2, subclass: 0, prog_if: 0 }", n,
                        sequential=True)

    def nic(session: octopus.Session, order: DriverStart) -> None:
        ran.append((order.name, threading.current_thread().name))
        session.names.register(order.name.removeprefix("driver."),
                               core=order.core)

    starter = ThreadStarter(engine, {"pci": bus_driver, "e10k": nic})
    with Kaluga(engine, starter=starter, platform="barrelfish") as kaluga:
        engine.set("hw.pci.rootbridge.0 { bus: 0 }")
        for k in range(3):
            engine.wait_for("%n", f"e10k.{k}", timeout=10)
        assert starter.join(10)
        assert kaluga.idle()
    starter.close()
    assert sorted(ran) == [("driver.e10k.0", "e10k.0"), ("driver.e10k.1", "e10k.1"),
                           ("driver.e10k.2", "e10k.2"), ("driver.pci.0", "pci.0")]
    assert engine.get("driver.e10k.1")["core"] == 3
    assert engine.get("driver.pci.0")["device"] == "hw.pci.rootbridge.0"
    assert starter.errors == []


def test_starting_twice_is_refused(engine: octopus.Engine) -> None:
    with Kaluga(engine, starter=RecordingStarter()) as kaluga, \
            pytest.raises(octopus.OctopusError):
        kaluga.start()


