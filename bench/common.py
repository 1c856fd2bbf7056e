"""Shared benchmark harness: timing loops, tables, machine facts and RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def swipl_version() -> str:
    from octopus._prolog import runtime

    v = runtime().janus.apply_once("user", "current_prolog_flag", "version")
    return f"SWI-Prolog {v // 10000}.{v // 100 % 100}.{v % 100}"


def per_second(func: Callable[[], Any], *, seconds: float = 1.0, batch: int = 1000,
               repeat: int = 3) -> float:
    """Best-of-``repeat`` calls per second of ``func`` (each run about ``seconds``)."""
    best = 0.0
    for _ in range(repeat):
        n = 0
        start = time.perf_counter()
        while True:
            for _ in range(batch):
                func()
            n += batch
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, n / elapsed)
    return best


def latency(func: Callable[[], Any], *, n: int = 20, warm: int = 2) -> tuple[float, float]:
    """(median, min) seconds of ``func`` over ``n`` runs after ``warm`` unmeasured ones."""
    for _ in range(warm):
        func()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], times[0]


def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", "",
             "| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in cells[1:]:
        lines.append("| " + " | ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                                       for c, w in zip(row, widths, strict=True)) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    return text


def _numeric(text: str) -> bool:
    return bool(text) and all(c.isdigit() or c in ",.-×%" for c in text)


def progress(total: int, label: str) -> Callable[[int], None]:
    """A progress bar on stderr: call it with the running count."""
    start = time.perf_counter()

    def update(done: int) -> None:
        width = 40
        filled = int(width * done / total) if total else width
        rate = done / max(time.perf_counter() - start, 1e-9)
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done:>9,}/{total:,} {rate:,.0f}/s")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return update


def commit_of(directory: Path) -> str:
    """The short commit checked out in ``directory`` ("" if it is not a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=directory).stdout.strip()
    except OSError:
        return ""


def record_results(name: str, text: str) -> None:
    """Replace the section ``name`` of bench/RESULTS.md with ``text``."""
    path = HERE / "RESULTS.md"
    stamp = datetime.date.today().isoformat()
    commit = commit_of(HERE) or "?"
    section = (f"<!-- {name} -->\n## {name}\n\n{stamp}, commit {commit}; {machine()}; "
               f"{swipl_version()}.\n\n{text.strip()}\n<!-- /{name} -->\n")
    old = path.read_text() if path.exists() else "# Benchmark results\n\nLatest numbers of " \
        "each script in bench/ (`make bench` reruns all). Figures on these 2-core shared " \
        "machines vary by ±30%; compare the ratios, which are measured in the same run.\n\n"
    start, end = old.find(f"<!-- {name} -->"), old.find(f"<!-- /{name} -->")
    if start >= 0 and end >= 0:
        end = old.index("\n", end) + 1
        new = old[:start] + section + old[end:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    path.write_text(new)


VENDORS = [0x8086, 0x1AF4, 0x10EC, 0x15B3, 0x1924, 0x14E4, 0x1022, 0x10DE]


def pci_records(n: int, seed: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    """``n`` device records; exactly 10 have vendor 0x8086 and device_id 0x100e (4110),
    and only the last has device_id 0xfffe."""
    rng = random.Random(seed)
    special = set(rng.sample(range(n - 1), 10))
    for i in range(n):
        if i in special:
            vendor, device_id = 0x8086, 0x100E
        elif i == n - 1:
            vendor, device_id = 0x8086, 0xFFFE
        else:
            vendor = VENDORS[0] if rng.random() < 0.3 else rng.choice(VENDORS)
            device_id = rng.randrange(0x1000, 0xFF00)
            if device_id == 0x100E:
                device_id += 1
        yield (f"hw.pci.device.{i}",
               {"bus": i // 256 % 256, "device": i % 32, "vendor": vendor,
                "device_id": device_id, "class": "C" if i % 3 else "X"})


def callgrind_dumps(directory: Path) -> dict[str, int]:
    """The instructions of each dump of the calling thread in ``directory`` (valgrind's
    callgrind with ``--separate-threads=yes``, dumps made by ``callgrind_control -d
    NAME``), by NAME."""
    counts: dict[str, int] = {}
    for path in directory.glob("cg.out.*-01"):
        text = path.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: (?:dump )?(\S+)", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if trigger and total:
            counts[trigger.group(1)] = int(total.group(1))
    return counts
