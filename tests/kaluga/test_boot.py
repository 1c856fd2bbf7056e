"""The boot demo's end state: every device has its driver, every core is up, every
service registered — and the same seed gives the same boot."""

from __future__ import annotations

from pathlib import Path

import pytest

from octopus.cli import main
from octopus.kaluga.boot import Boot, BootConfig, run_boot
from octopus.kaluga.machine import generate


@pytest.mark.parametrize("config", [
    BootConfig(),
    BootConfig(cores=1, bridges=0, usb=0, seed=1),
    BootConfig(cores=8, bridges=4, usb=4, seed=7),
    BootConfig(cores=2, bridges=3, usb=1, seed=3, cards=6),
])
def test_end_state(config: BootConfig) -> None:
    report = run_boot(config)
    assert report.problems == []
    machine = report.machine
    assert report.cores_up == [p.barrelfish_id for p in machine.processors]
    assert len(report.rows) == len(machine.functions) + len(machine.usb_devices)
    for row in report.rows:
        assert row.driver is not None, row
        assert row.service is not None, row
        assert row.core is not None and row.core < config.cores, row
    wanted = {"acpi", "pci", "netd", "vfs", "dma_mgr",
              *(f"spawn.{c}" for c in range(config.cores))}
    assert wanted <= set(report.services)
    assert {r.service for r in report.rows} <= set(report.services)
    # every device was a row of unbound_device/1 until Kaluga started its driver
    assert report.unbound == []
    assert set(report.unbound_seen) == {r.record for r in report.rows}


def test_end_state_in_the_store() -> None:
    """Check the records themselves, on an engine the test keeps open."""
    import octopus

    with octopus.Engine() as engine:
        boot = Boot(BootConfig(cores=3, bridges=2, usb=2, seed=11), engine=engine)
        report = boot.run()
        assert report.ok, report.problems
        assert engine.get("all_spawnds_up")["cores"] == 3
        devices = engine.get_all(r"r'^hw\.(pci|usb)\.device\.'")
        drivers = engine.get_all(r"r'^driver\.'")
        served = {d["device"] for d in drivers}
        for device in devices:
            decision = boot.kaluga.decisions[device.name]
            assert decision.instance is not None
            assert engine.exists("%n", decision.instance)
            if decision.started:
                assert device.name in served
        assert engine.get_names(r"r'^barrier\.'") == []   # the ACPI barrier round is over


def test_same_seed_same_boot() -> None:
    config = BootConfig(cores=4, bridges=3, usb=3, seed=42)
    a, b = run_boot(config), run_boot(config)
    assert a.rows == b.rows
    assert a.timeline.entries() == b.timeline.entries()
    assert a.simulated_us == b.simulated_us


def test_seeds_make_different_machines() -> None:
    machines = {tuple(f.device_id for f in generate(seed=s).functions) for s in range(6)}
    assert len(machines) > 1


def test_bad_configuration() -> None:
    with pytest.raises(ValueError):
        generate(cores=0)


def test_cli_demo_and_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "boot.png"
    assert main(["demo", "--seed", "2", "--cores", "3", "--graph", str(png)]) == 0
    out = capsys.readouterr().out
    assert "booted" in out and "all_spawnds_up" in out and "e1000n.0" in out
    assert "devices without a driver (unbound_device/1): none now" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
