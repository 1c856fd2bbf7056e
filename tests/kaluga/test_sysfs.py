"""The sysfs reader and the Linux comparison, against a fake sysfs tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from octopus.cli import main
from octopus.kaluga.sysfs import compare, find_pci_ids, parse_pci_ids, read_sysfs

PCI_IDS = """\
# a tiny pci.ids
1af4  Red Hat, Inc.
\t1041  Virtio 1.0 network device
\t1042  Virtio 1.0 block device
8086  Intel Corporation
\t100e  82540EM Gigabit Ethernet Controller
\t\t8086 001e  PRO/1000 MT Desktop Adapter
\t2922  82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]
bad line without hex
C 01  Mass storage controller
\t06  SATA controller
\t\t01  AHCI 1.0
C 06  Bridge
\t00  Host bridge
"""

# slot: (vendor, device, class, driver link or None)
DEVICES = {
    "0000:00:00.0": (0x8086, 0x0d57, 0x060000, None),
    "0000:00:01.0": (0x1af4, 0x1041, 0x020000, "virtio-pci"),
    "0000:00:02.0": (0x1af4, 0x1042, 0x010000, "virtio-pci"),
    "0000:00:03.0": (0x8086, 0x100e, 0x020000, "e1000"),
    "0000:00:1f.2": (0x8086, 0x2922, 0x010601, "ahci"),
    "0000:01:00.0": (0x144d, 0xa808, 0x010802, "nvme"),
    "0000:02:00.0": (0x10ec, 0x8168, 0x020000, "r8168"),       # the vendor's driver
}


def fake_sysfs(root: Path) -> Path:
    devices = root / "bus" / "pci" / "devices"
    drivers = root / "bus" / "pci" / "drivers"
    devices.mkdir(parents=True)
    for slot, (vendor, device, klass, driver) in DEVICES.items():
        d = devices / slot
        d.mkdir()
        (d / "vendor").write_text(f"0x{vendor:04x}\n")
        (d / "device").write_text(f"0x{device:04x}\n")
        (d / "class").write_text(f"0x{klass:06x}\n")
        (d / "subsystem_vendor").write_text("0x1af4\n")
        (d / "subsystem_device").write_text("0x1100\n")
        if driver:
            (drivers / driver).mkdir(parents=True, exist_ok=True)
            os.symlink(f"../../../bus/pci/drivers/{driver}", d / "driver")
    (devices / "not-a-slot").mkdir()
    (devices / "0000:03:00.0").mkdir()        # no vendor file: skipped
    return devices


def test_read_sysfs(tmp_path: Path) -> None:
    devices = read_sysfs(fake_sysfs(tmp_path))
    assert [d.slot for d in devices] == list(DEVICES)
    ahci = devices[4]
    assert (ahci.bus, ahci.device, ahci.function) == (0, 0x1f, 2)
    assert (ahci.klass, ahci.subclass, ahci.prog_if) == (1, 6, 1)
    assert (ahci.subsystem_vendor, ahci.subsystem_device) == (0x1af4, 0x1100)
    assert ahci.linux_driver == "ahci"
    assert devices[0].linux_driver is None
    with pytest.raises(FileNotFoundError):
        read_sysfs(tmp_path / "absent")


def test_parse_pci_ids(tmp_path: Path) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(PCI_IDS)
    rows = parse_pci_ids(ids)
    assert rows["pci_vendor_name"] == [(0x1af4, "Red Hat, Inc."), (0x8086, "Intel Corporation")]
    assert (0x8086, 0x100e, "82540EM Gigabit Ethernet Controller") in rows["pci_device_name"]
    assert rows["pci_subsystem_name"] == [(0x8086, 0x100e, 0x8086, 0x001e,
                                           "PRO/1000 MT Desktop Adapter")]
    assert (1, -1, "Mass storage controller") in rows["pci_class_name"]
    assert (6, 0, "Host bridge") in rows["pci_class_name"]


def test_compare(tmp_path: Path) -> None:
    ids = tmp_path / "pci.ids"
    ids.write_text(PCI_IDS)
    results = compare(read_sysfs(fake_sysfs(tmp_path)), pci_ids=ids, progress=False)
    lines = [r.line() for r in results]
    assert lines == [
        "0000:00:00.0 8086:0d57 Intel Corporation Host bridge kb=- linux=- unbound",
        "0000:00:01.0 1af4:1041 Red Hat, Inc. Virtio 1.0 network device "
        "kb=virtio-pci linux=virtio-pci agree",
        "0000:00:02.0 1af4:1042 Red Hat, Inc. Virtio 1.0 block device "
        "kb=virtio-pci linux=virtio-pci agree",
        "0000:00:03.0 8086:100e Intel Corporation 82540EM Gigabit Ethernet Controller "
        "kb=e1000 linux=e1000 agree",
        "0000:00:1f.2 8086:2922 Intel Corporation 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA "
        "Controller [AHCI mode] kb=ahci linux=ahci agree",
        "0000:01:00.0 144d:a808 Mass storage controller kb=nvme linux=nvme agree",
        "0000:02:00.0 10ec:8168 class 020000 kb=r8169 linux=r8168 differ",
    ]


def test_cli_kaluga(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = fake_sysfs(tmp_path)
    assert main(["kaluga", "--sysfs", str(root), "--no-names"]) == 1     # r8168 differs
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "7 PCI functions: 5 agree, 1 differ, 1 unbound (no Linux driver)"
    assert main(["kaluga", "--sysfs", str(tmp_path / "absent")]) == 2


@pytest.mark.skipif(not Path("/sys/bus/pci/devices").is_dir(), reason="no PCI sysfs here")
def test_this_machine_agrees_with_linux() -> None:
    """Every device Linux bound on this machine gets the same driver from the KB."""
    results = compare(read_sysfs("/sys/bus/pci/devices"), pci_ids=find_pci_ids(),
                      progress=False)
    assert results
    assert [r.line() for r in results if r.verdict == "differ"] == []
