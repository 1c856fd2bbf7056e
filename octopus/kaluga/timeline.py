"""The boot demo's timeline: who did what when, printed with rich, drawn with matplotlib.

Times are *simulated* microseconds, not wall-clock time: every participant keeps a
clock that moves forward by its own (seeded) work and jumps to the time stamp ``t``
of every record it waits for. The timeline of a seed is therefore the same on every
run, whatever the threads' real interleaving, and it shows the boot's critical path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Entry", "Timeline"]

#: how each kind of entry is shown
KIND_STYLE = {
    "record": ("＋", "green"),
    "trigger": ("⚡", "bold yellow"),
    "wait": ("…", "dim"),
    "start": ("▶", "bold cyan"),
    "register": ("★", "bold green"),
    "barrier": ("⇅", "bold magenta"),
    "ignore": ("·", "dim"),
    "assign": ("→", "cyan"),
    "work": ("⚙", "white"),
}

_WHO_COLOURS = ["bright_blue", "bright_magenta", "bright_cyan", "bright_green",
                "yellow", "bright_red", "blue", "magenta", "cyan", "green", "red"]


#: among entries at the same instant: actions, then waits, then what they caused
_RANK = {"work": 0, "record": 0, "register": 0, "barrier": 0, "wait": 1, "trigger": 2,
         "ignore": 3, "assign": 3, "start": 4}


@dataclass(frozen=True, slots=True)
class Entry:
    t: int              # simulated microseconds since power-on
    who: str
    kind: str
    text: str
    seq: int = 0        # the participant's own count of its entries

    def key(self) -> tuple[int, int, str, int]:
        return (self.t, _RANK.get(self.kind, 5), self.who, self.seq)


class Timeline:
    """A thread-safe list of entries, shown in a deterministic order: by time, then
    actions before the waits and triggers they cause, then participant, then the
    participant's own order."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, t: int, who: str, kind: str, text: str) -> None:
        with self._lock:
            seq = self._counts.get(who, 0)
            self._counts[who] = seq + 1
            self._entries.append(Entry(int(t), who, kind, text, seq))

    def entries(self) -> list[Entry]:
        with self._lock:
            return sorted(self._entries, key=Entry.key)

    def participants(self) -> list[str]:
        """Participants in order of their first entry."""
        seen: dict[str, None] = {}
        for e in self.entries():
            seen.setdefault(e.who, None)
        return list(seen)

    @staticmethod
    def colour(who: str) -> str:
        family = who.split(".")[0]
        fixed = {"bsp": "bold white", "kaluga": "bold bright_yellow", "acpi": "bright_red",
                 "pci": "bright_blue", "cpu": "bright_magenta", "spawnd": "magenta"}
        if family in fixed:
            return fixed[family]
        return _WHO_COLOURS[sum(map(ord, family)) % len(_WHO_COLOURS)]

    def print(self, console: Console) -> None:
        from rich.table import Table
        from rich.text import Text

        table = Table(title="Boot timeline (simulated time)", header_style="bold",
                      show_lines=False, expand=False)
        table.add_column("t [ms]", justify="right", style="dim")
        table.add_column("who", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("what")
        for e in self.entries():
            mark, style = KIND_STYLE.get(e.kind, ("", ""))
            table.add_row(f"{e.t / 1000:8.3f}", Text(e.who, style=self.colour(e.who)),
                          Text(mark, style=style), Text(e.text, style=style
                                                        if e.kind in ("trigger", "register",
                                                                      "barrier") else ""))
        console.print(table)

    def draw(self, path: str | Path, title: str = "Boot timeline") -> Path:
        """A Gantt-style PNG: one row per participant, from its first to its last entry,
        with a marker per entry (triggers and registrations highlighted)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        entries = self.entries()
        rows = self.participants()
        index = {who: i for i, who in enumerate(rows)}
        span: dict[str, list[int]] = {}
        for e in entries:
            span.setdefault(e.who, [e.t, e.t])[1] = e.t
        palette = plt.get_cmap("tab20")
        families = sorted({who.split(".")[0] for who in rows})
        colour = {f: palette(i % 20) for i, f in enumerate(families)}
        fig, ax = plt.subplots(figsize=(12, max(3.0, 0.32 * len(rows) + 1.2)))
        for who, (t0, t1) in span.items():
            y = index[who]
            ax.barh(y, max((t1 - t0) / 1000, 0.05), left=t0 / 1000, height=0.6,
                    color=colour[who.split(".")[0]], alpha=0.55)
        markers = {"trigger": ("v", "goldenrod"), "register": ("*", "green"),
                   "start": (">", "teal"), "barrier": ("D", "purple"),
                   "wait": ("|", "grey")}
        for kind, (m, c) in markers.items():
            xs = [e.t / 1000 for e in entries if e.kind == kind]
            ys = [index[e.who] for e in entries if e.kind == kind]
            if xs:
                ax.scatter(xs, ys, marker=m, color=c, s=36, zorder=3, label=kind)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("simulated time [ms]")
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out
