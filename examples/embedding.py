"""Octopus embedded in a Python program: records, queries, a trigger, compare-and-set,
and a lock, all in-process (no server).

Run: python examples/embedding.py
"""

from __future__ import annotations

import octopus


def main() -> None:
    with octopus.Engine() as engine:
        # A trigger: the handler runs on the engine's event thread for every change to
        # a matching record, in revision order. It only collects here; printing from two
        # threads at once would interleave the output.
        events: list[octopus.Event] = []
        engine.watch("r'^hw\\.pci\\.' { vendor: 0x8086 }", events.append)

        engine.set("hw.pci.device.0 { vendor: 0x8086, device_id: 0x100e, class: 'C' }")
        engine.set("hw.pci.device.1 { vendor: 0x10ec, device_id: 0x8168, class: 'C' }")

        # Queries: constraints on attributes, regular expressions on names; values are
        # bound to placeholders, never spliced into the text.
        nic = engine.get("_ { vendor: %d, device_id >= 0x1000 }", 0x8086)
        print("found:", nic.name, hex(nic["device_id"]))
        print("names:", engine.get_names("r'^hw\\.pci\\.'"))

        # Compare-and-set: the write happens only if the condition holds.
        engine.set("counter { value: 1 }")
        engine.set("counter { value: 2, value == 1 }")
        try:
            engine.set("counter { value: 3, value == 1 }")
        except octopus.ConditionFailed:
            print("compare-and-set refused: value is", engine.get("counter")["value"])

        # A lock from a session: its record is ephemeral, so it goes with the session.
        with engine.session() as s, s.lock("printer") as lock:
            print("holding the printer lock, fencing token", lock.token)

        engine.flush()            # wait until the trigger's handler has seen everything
        for event in events:
            print("event:", event.mode.name, event.record)


if __name__ == "__main__":
    main()
