"""The ``octopus`` command line (grows with the server and demo issues)."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from octopus.kaluga.demo import main as demo_main

    return demo_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="octopus", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="boot a simulated machine with Kaluga (the paper's "
                                       "use case)")
    from octopus.kaluga.demo import add_arguments as demo_arguments

    demo_arguments(demo)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
