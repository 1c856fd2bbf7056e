"""``octopus demo``: boot the simulated machine and show what happened (rich)."""

from __future__ import annotations

import argparse
import sys

from octopus.kaluga.boot import BootConfig, BootReport, run_boot

__all__ = ["add_arguments", "main", "render"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=int, default=4, help="processors (default 4)")
    parser.add_argument("--bridges", type=int, default=2,
                        help="PCI-to-PCI bridges in the PCI tree (default 2)")
    parser.add_argument("--usb", type=int, default=3, help="USB devices (default 3)")
    parser.add_argument("--cards", type=int, default=None,
                        help="extra PCI cards (default: one or two per bridge)")
    parser.add_argument("--seed", type=int, default=0, help="machine and timing seed")
    parser.add_argument("--graph", metavar="PNG", default=None,
                        help="also draw the timeline as a Gantt chart into this PNG")
    parser.add_argument("--quiet", action="store_true",
                        help="no timeline, only the device table and the summary")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds any participant may wait (default 30)")


def render(report: BootReport, quiet: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    m = report.machine
    console.rule(f"[bold]octopus boot demo[/] — seed {m.seed}: {len(m.processors)} cores, "
                 f"{len(m.functions)} PCI functions behind {len(m.bridges)} bridges, "
                 f"{len(m.usb_devices)} USB devices")
    if not quiet:
        report.timeline.print(console)
    table = Table(title="Devices, drivers, cores, services", header_style="bold")
    for col in ("device", "where", "ids", "driver", "core", "service", "description"):
        table.add_column(col, no_wrap=col != "description")
    for r in report.rows:
        table.add_row(r.record, r.where, r.ids,
                      r.instance.removeprefix("driver.") if r.instance else "[red]-[/]",
                      "-" if r.core is None else str(r.core),
                      r.service or "[red]-[/]", r.description)
    console.print(table)
    console.print(f"cores up: {', '.join(map(str, report.cores_up))}; services: "
                  f"{', '.join(report.services)}")
    console.print(f"devices without a driver (unbound_device/1): "
                  f"{', '.join(report.unbound) or 'none'} now; "
                  f"{len(report.unbound_seen)} were, while they waited for one")
    status = "[bold green]booted[/]" if report.ok else "[bold red]FAILED[/]"
    console.print(f"{status} in {report.simulated_us / 1000:.1f} ms simulated, "
                  f"{report.wall_seconds:.2f} s wall clock")
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}")


def main(args: argparse.Namespace) -> int:
    try:
        config = BootConfig(cores=args.cores, bridges=args.bridges, usb=args.usb,
                            seed=args.seed, cards=args.cards, timeout=args.timeout)
        report = run_boot(config)
    except ValueError as e:
        print(f"octopus demo: {e}", file=sys.stderr)
        return 2
    render(report, quiet=args.quiet)
    if args.graph:
        path = report.timeline.draw(args.graph, title=f"octopus boot demo (seed {args.seed})")
        print(f"wrote {path}")
    return 0 if report.ok else 1
