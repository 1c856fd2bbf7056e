"""The knowledge base next to the record store: facts and rules in Prolog, asked with
values as data, combined with records (which driver serves each device record).

Run: python examples/knowledge_base.py
"""

from __future__ import annotations

from pathlib import Path

import octopus
from octopus.kaluga.drivers import DriverDatabase

HERE = Path(__file__).resolve().parent


def main() -> None:
    with octopus.Engine() as engine:
        # Rules from a file, facts from a string.
        engine.consult(HERE / "kb" / "rooms.pl")
        engine.add_facts("""
            located(printer1, room_101).
            located(printer2, room_204).
            located(scanner1, room_101).
        """)
        # Goal text is trusted application code; values are bound as data.
        for s in engine.prolog("device_on_floor(Device, Floor)", Floor=1):
            print("on floor 1:", s["Device"])
        print("printer2 is on floor",
              engine.prolog_once("device_on_floor(printer2, F)")["F"])

        # Records and the knowledge base together: Kaluga's driver database (shipped
        # with octopus) says which driver serves a PCI device record.
        engine.set("hw.pci.device.0 { vendor: 0x8086, device_id: 0x100e, class: 2 }")
        with engine.session() as session:
            drivers = DriverDatabase(session)
            drivers.load()
            device = engine.get("hw.pci.device.0")
            driver = drivers.lookup(device)
            print(f"{device.name}: driver {driver.binary if driver else None}")


if __name__ == "__main__":
    main()
