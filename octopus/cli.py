"""The ``octopus`` command line (grows with the server and demo issues)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from octopus.kaluga.demo import main as demo_main

    return demo_main(args)


def _kaluga(args: argparse.Namespace) -> int:
    from octopus.kaluga.sysfs import main as sysfs_main

    return sysfs_main(args.sysfs, args.pci_ids, args.no_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octopus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="boot a simulated machine with Kaluga (the paper's "
                                       "use case)")
    from octopus.kaluga.demo import add_arguments as demo_arguments

    demo_arguments(demo)
    demo.set_defaults(func=_demo)
    kaluga = sub.add_parser("kaluga", help="run this machine's PCI devices through Kaluga "
                                           "and compare with the drivers Linux bound")
    kaluga.add_argument("--sysfs", default="/sys/bus/pci/devices",
                        help="the PCI devices directory (default /sys/bus/pci/devices)")
    kaluga.add_argument("--pci-ids", default=None,
                        help="pci.ids file for device names (default: the system's)")
    kaluga.add_argument("--no-names", action="store_true", help="do not load pci.ids")
    kaluga.set_defaults(func=_kaluga)
    from octopus.server.cli import add_commands as add_server_commands

    add_server_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
