"""A removed device stops its driver: Kaluga watches the derived relation
stale_driver/1 (prolog/kaluga_rules.pl) and stops an instance when no device of it is
left — and only then."""

from __future__ import annotations

import threading

import octopus
from octopus import Mode, RowEvent
from octopus.kaluga import DriverStart, Kaluga, ThreadStarter

E10K = "vendor: 0x8086, device_id: 0x10fb, class: 2, subclass: 0, prog_if: 0"   # multi
MLX4 = "vendor: 0x15b3, device_id: 0x1003, class: 2, subclass: 0, prog_if: 0"   # single
UNKNOWN = "vendor: 0xabcd, device_id: 0x0001, class: 0xff, subclass: 0, prog_if: 0"


def pci(engine: octopus.Engine, n: int, ids: str) -> None:
    engine.set(f"hw.pci.device.{n} {{ bus: 0, device: {n}, function: 0, {ids} }}")


def registering(running: dict[str, threading.Event]) -> dict[str, object]:
    """Driver mains that register their service and run until their session ends."""
    def main(session: octopus.Session, order: DriverStart) -> None:
        done = running.setdefault(order.name, threading.Event())
        session.names.register(order.name.removeprefix("driver."), core=order.core)
        try:
            while not done.wait(0.01):
                session.exists("%n", order.name)       # EngineClosed once stopped
        finally:
            done.set()
    return {"e10k": main, "mlx4": main}


def test_removing_a_device_stops_its_driver(engine: octopus.Engine) -> None:
    running: dict[str, threading.Event] = {}
    starter = ThreadStarter(engine, registering(running))  # type: ignore[arg-type]
    with Kaluga(engine, starter=starter, require_spawnd=False) as kaluga:
        pci(engine, 0, E10K)
        pci(engine, 1, E10K)
        engine.wait_for("e10k.1", timeout=10)
        assert kaluga.idle()
        engine.delete("hw.pci.device.0")
        assert kaluga.idle()
        assert engine.flush(10)
        assert starter.stopped == ["driver.e10k.0"]
        assert not engine.exists("driver.e10k.0")
        assert not engine.exists("e10k.0")              # its service went with its session
        assert engine.exists("driver.e10k.1") and engine.exists("e10k.1")
        assert running["driver.e10k.0"].wait(10)         # its thread ended
        assert "driver.e10k.0" not in kaluga.instances
        pci(engine, 0, E10K)                            # a new device, a new instance
        engine.wait_for("e10k.2", timeout=10)
        assert kaluga.idle()
    starter.close()
    assert starter.join(10)
    assert starter.errors == []


def test_a_single_instance_driver_stops_with_its_last_device(engine: octopus.Engine) -> None:
    running: dict[str, threading.Event] = {}
    starter = ThreadStarter(engine, registering(running))  # type: ignore[arg-type]
    stale: list[RowEvent] = []
    with Kaluga(engine, starter=starter, require_spawnd=False) as kaluga:
        engine.watch_relation("stale_driver", stale.append)
        pci(engine, 0, MLX4)
        pci(engine, 1, MLX4)                            # assigned to driver.mlx4.0
        assert kaluga.idle()
        assert engine.get("kaluga.assign.hw.pci.device.1")["instance"] == "driver.mlx4.0"
        engine.delete("hw.pci.device.0")                # the device it was started for
        assert kaluga.idle() and engine.flush(10)
        assert starter.stopped == []                    # it still serves device 1
        engine.delete("hw.pci.device.1")
        assert kaluga.idle() and engine.flush(10)
        assert kaluga.idle()
        assert starter.stopped == ["driver.mlx4.0"]
        assert engine.get_names(r"r'^(driver|kaluga)\.'") == []
    assert [e.row for e in stale if e.mode is Mode.ON_SET] == [("driver.mlx4.0",)]
    starter.close()


def test_devices_without_a_driver_are_a_relation(engine: octopus.Engine) -> None:
    starter = ThreadStarter(engine)
    with Kaluga(engine, starter=starter, require_spawnd=False) as kaluga:
        unbound: list[RowEvent] = []
        engine.watch_relation("unbound_device", unbound.append, existing=True)
        pci(engine, 0, UNKNOWN)
        pci(engine, 1, E10K)
        assert kaluga.idle() and engine.flush(10)
        now = {s["Dev"] for s in engine.prolog("unbound_device(Dev)")}
        assert now == {"hw.pci.device.0"}
        rows: set[object] = set()
        for e in unbound:
            if e.mode is Mode.ON_SET:
                rows.add(e.row)
            elif e.mode is Mode.ON_DEL:
                rows.discard(e.row)
        assert rows == {("hw.pci.device.0",)}
