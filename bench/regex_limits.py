"""What one regular expression can cost, before and after the regex limits.

    .venv/bin/python bench/regex_limits.py

"Before" is the old way of running a pattern P: PCRE2's unanchored search of
``(*LIMIT_MATCH=100000)(*LIMIT_DEPTH=10000)P``, whose match limit counts per start
position. "After" is the engine's: the anchored search ``\\A(?s:.*?)(?:P)`` under a match
limit of 20,000 steps for the whole search, on texts of at most 1,024 characters. The
"before" searches run in a child process, because that way of running patterns could
abort the process.

1. One search: adversarial pattern families on texts of 1,024 to 16,384 characters.
2. Ordinary patterns: µs per search before and after (the price of the bounded search
   and of the per-query budget check).
3. Whole requests: NAMES over a long value, a query stopped by its CPU budget, the cost a
   regex trigger adds to every write, probing a trigger pattern at install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from common import record_results, table

import octopus
from octopus._prolog import runtime

HERE = Path(__file__).resolve().parent

ADVERSARIAL = [
    ("\\w*?[^x]", "x"),                       # lazy quadratic scan (issue 10: 6.3 s on 40k)
    ("[a-z]*[0-9]", "a"),                     # possessive quadratic scan, no backtracking
    ("(?=a*+)" * 36 + "[0-9]", "a"),          # 36 scans per start position
    ("a?" * 12 + "(?=a*+)[0-9]", "a"),        # backtracking x scans per start position
    ("(?:a?){0,40}(?=[a-z]*[0-9])", "a"),
    ("(?:a?){250}[bc]", "a"),                 # long compiled program per step
    ("(a+)+b", "a"),                          # classic exponential
    ("(\\w+\\s?)*$", "a"),
]
ORDINARY = [
    ("^hw\\.pci\\.device\\.1\\d$", "hw.pci.device.17"),
    ("device", "hw.pci.device.17"),
    ("\\d+$", "hw.pci.device.17"),
    (".*bar", ("lorem ipsum dolor sit amet " * 8)[:200]),
    ("\\bfoo\\b", ("lorem ipsum dolor sit amet " * 8)[:200]),
    ("\\d+", ("lorem ipsum dolor sit amet " * 40)[:1000]),
    ("error|warn|fatal", ("lorem ipsum dolor sit amet " * 40)[:1000]),
]

BEFORE_GOAL = (
    "atom_concat('(*LIMIT_MATCH=100000)(*LIMIT_DEPTH=10000)', P, _W), "
    "pcre:re_compile(_W, _R, []), "
    "statistics(cputime, _T0), "
    "forall(between(1, N, _), catch(ignore(pcre:re_match(_R, S)), error(_, _), true)), "
    "statistics(cputime, _T1), "
    "( catch(pcre:re_match(_R, S), error(_E, _), true) -> "
    "  ( var(_E) -> O = match ; _E = resource_error(_L) -> O = _L ; O = other ) ; O = nomatch ), "
    "T is (_T1 - _T0) / N")
AFTER_GOAL = (
    "catch(( octopus_match:regex_compile(P, _Rx), "
    "        statistics(cputime, _T0), "
    "        octopus_match:with_regex_budget(forall(between(1, N, _), "
    "            catch(ignore(octopus_match:regex_match(_Rx, S, name)), error(_, _), true))), "
    "        statistics(cputime, _T1), "
    "        ( catch(octopus_match:regex_match(_Rx, S, name), error(_E, _), true) -> "
    "          ( var(_E) -> O = match ; _E = resource_error(_L) -> O = _L ; O = other ) "
    "        ; O = nomatch ), "
    "        T is (_T1 - _T0) / N ), "
    "      error(octopus_error(query, _), _), (O = refused, T = 0))")


def measure(goal: str, jobs: list[tuple[str, str, int]]) -> list[tuple[str, float]]:
    janus = runtime().janus
    out = []
    for pattern, text, n in jobs:
        answer = janus.query_once(goal, {"P": pattern, "S": text, "N": n})
        out.append((str(answer["O"]), float(answer["T"])))
    return out


BEFORE_TIMEOUT = 20.0


def measure_before(jobs: list[tuple[str, str, int]]) -> list[str]:
    """The old way, each search in its own child process (it can abort, or run for
    minutes): "ms (outcome)", "aborted" or "> 20 s". A pattern that ran out of time on
    a text is not tried on longer ones."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import regex_limits as b; "
            "print(json.dumps(b.measure(b.BEFORE_GOAL, [tuple(json.load(sys.stdin))])[0]))")
    out: list[str] = []
    slow: set[str] = set()
    for job in jobs:
        if job[0] in slow:
            out.append(f"> {BEFORE_TIMEOUT:.0f} s")
            continue
        try:
            proc = subprocess.run([sys.executable, "-c", code, str(HERE)],
                                  input=json.dumps(job), capture_output=True, text=True,
                                  cwd=HERE, timeout=BEFORE_TIMEOUT + 5)
        except subprocess.TimeoutExpired:
            slow.add(job[0])
            out.append(f"> {BEFORE_TIMEOUT:.0f} s")
            continue
        if proc.returncode != 0:
            out.append("aborted")
            continue
        outcome, seconds = json.loads(proc.stdout)
        out.append(f"{seconds * 1e3:.2f} ({outcome})" if job[2] == 1
                   else f"{seconds * 1e6:.2f}")
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def one_search() -> str:
    jobs = [(p, c * n, 1) for p, c in ADVERSARIAL for n in (1024, 4096, 16384)]
    before = measure_before(jobs)
    after = measure(AFTER_GOAL, [(p, t[:1024], 1) for p, t, _ in jobs])
    rows = []
    for (pattern, text, _), b_text, (outcome, seconds) in zip(jobs, before, after,
                                                            strict=True):
        shown = pattern if len(pattern) <= 30 else pattern[:27] + "..."
        a_text = (f"{ms(seconds)} ({outcome})" if len(text) <= 1024
                  else "QueryError at once (text over 1,024)")
        rows.append([shown, f"{len(text):,}", b_text, a_text])
    return table("One search: ms of CPU (outcome)", ["pattern", "text", "before", "after"], rows)


def ordinary() -> str:
    jobs = [(p, t, 20000) for p, t in ORDINARY]
    before = measure_before(jobs)
    after = measure(AFTER_GOAL, jobs)
    rows = [[p, f"{len(t):,}", b, f"{a[1] * 1e6:.2f}", a[0]]
            for (p, t, _), b, a in zip(jobs, before, after, strict=True)]
    return table("Ordinary patterns: µs per search", ["pattern", "text", "before", "after",
                                                      "outcome"], rows)


def timed(func: object) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        func()  # type: ignore[operator]
        outcome = "ok"
    except octopus.OctopusError as e:
        outcome = type(e).__name__ + ": " + str(e)[:60] + "..."
    return time.perf_counter() - t0, outcome


def requests() -> str:
    rows = []
    with octopus.Engine() as e:
        e.set("big { s: %s }", "x" * 60000)
        seconds, outcome = timed(lambda: e.get_names("_ { s: r'\\w*?[^x]' }"))
        rows.append(["NAMES _ { s: r'\\w*?[^x]' }, one 60,000-char value",
                     "13,900 (issue 10)", ms(seconds), outcome])
    with octopus.Engine() as e:
        e.set("big { s: %s }", "x" * 1024)
        seconds, outcome = timed(lambda: e.get_names("_ { s: r'\\w*?[^x]' }"))
        rows.append(["same, 1,024-char value", "≈10", ms(seconds), outcome])
    with octopus.Engine() as e:
        for i in range(2000):
            e.set("%s { s: %s }", f"r{i}", "a" * 1000)
        seconds, outcome = timed(lambda: e.get_names("_ { s: r'[a-z]*[0-9]' }"))
        rows.append(["NAMES r'[a-z]*[0-9]' over 2,000 values of 1,000 chars (1.3 ms each)",
                     "≈2,600", ms(seconds), outcome])
        seconds, outcome = timed(lambda: e.get_names("_ { s: r'^a{5}b' }"))
        rows.append(["NAMES r'^a{5}b' over the same 2,000 values", "", ms(seconds),
                     outcome])
    return table("Whole requests: ms", ["request", "before", "after", "outcome"], rows)


def trigger_costs() -> str:
    rows = []
    # Passes the install probe (no Greek letter among the pattern's characters or the
    # probed classes) but backtracks on Greek text: the worst case we found.
    evasive = "_ { s: r'(?:\\p{Greek}?){20}(?=\\p{Greek}*x)' }"
    name_pattern = "r'^hw\\.pci\\.device\\.1\\d$'"

    def nothing(event: octopus.Event) -> None:
        pass

    for label, query, count, record in [
            ("no trigger", None, 0, ("hw.pci.device.17", "x")),
            ("100 name triggers r'^hw\\.pci\\.device\\.1\\d$'", name_pattern, 100,
             ("hw.pci.device.17", "x")),
            ("the same, 1,024-char name", name_pattern, 100, ("n" + "7" * 1023, "x")),
            ("1 trigger passing the probe, worst text", evasive, 1, ("w", "α" * 1024)),
            ("100 of them, worst text", evasive, 100, ("w", "α" * 1024)),
            ("100 of them, ordinary text", evasive, 100, ("w", "lorem ipsum"))]:
        with octopus.Engine() as e:
            for _ in range(count):
                e.watch(query, nothing)
            e.set("%s { s: %s }", *record)
            n = 5 if count and query == evasive and "α" in record[1] else 200
            t0 = time.perf_counter()
            for _ in range(n):
                e.set("%s { s: %s }", *record)
            rows.append([label, ms((time.perf_counter() - t0) / n)])
    with octopus.Engine() as e:
        for label, pattern in [("ordinary: r'^(web|db|cache)\\d+$'", "^(web|db|cache)\\d+$"),
                               ("refused: r'(\\w+\\s?)*$'", "(\\w+\\s?)*$"),
                               ("refused: r'(?:\\d?){20}(?=\\d*x)'", "(?:\\d?){20}(?=\\d*x)"),
                               ("accepted, 16 distinct characters", "abcdefgh01234567")]:
            seconds, outcome = timed(lambda p=pattern: e.watch("r'" + p + "'", nothing))
            rows.append([f"install {label}", f"{ms(seconds)} ({outcome[:10]})"])
    return table("Triggers: ms per set with regex triggers installed; install cost",
                 ["case", "ms"], rows)


def main() -> None:
    out = [one_search(), ordinary(), requests(), trigger_costs()]
    record_results("Regex limits (bench/regex_limits.py)", "\n".join(out))


if __name__ == "__main__":
    main()
