"""A short scripted session against the embedded engine (what `make demo` runs until
the boot demo lands)."""

from __future__ import annotations

from octopus import Engine, Event, Mode, NotFound


def run() -> int:
    with Engine() as engine:
        def show(event: Event) -> None:
            print(f"  trigger {event.trigger_id}: {event.mode.name} {event.record}")

        print("watching hw.pci.device.* records with vendor 0x8086")
        engine.watch("r'^hw\\.pci\\.device\\.' { vendor: 0x8086 }", show)
        engine.set("hw.pci.device.0 { bus: 0, device: 2, vendor: 0x8086, device_id: 0x100e }")
        engine.set("hw.pci.device.1 { bus: 0, device: 3, vendor: 0x1af4, device_id: 0x1000 }")
        engine.set("hw.pci.device.2 { bus: 0, device: 4, vendor: 0x8086, device_id: 0x10d3 }")
        engine.flush()
        print("names:", engine.get_names("r'^hw\\.pci'"))
        print("get  :", engine.get("_ { vendor: 0x8086, device_id > 0x1000 }"))
        engine.set("counter { value: 1 }")
        engine.set("counter { value: 2, value == 1 }")
        print("cas  :", engine.get("counter"))
        engine.delete("hw.pci.device.0")
        engine.flush()
        try:
            engine.get("hw.pci.device.0")
        except NotFound as e:
            print("gone :", e)
        print("mode flags:", [m.name for m in Mode])
    return 0
