"""Child process of the regex fuzz: runs patterns through every path that reaches PCRE2.

Reads ``{"patterns": [...], "texts": [...]}`` as JSON on stdin. For each pattern it
prints ``{"start": i}`` (so a crash names its pattern) and then one result line. Paths:
get, get_names, get_all and exists with the pattern on names and on values (in the text
and as a %r parameter); a trigger and a subscription with the pattern, followed by a set
and a publish that they see; and the oracle comparing the engine's search with PCRE2's
own on short texts. Any exception
that is not an OctopusError is reported as a bug; an abort ends the process, which the
parent sees as a failed test.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import octopus
from octopus._prolog import runtime

HERE = Path(__file__).resolve().parent

# Stored texts: lengths up to the subject limit, and shapes that backtrack. Texts over
# the limit are stored under another key: a regex on them is always a QueryError.
VALUES = ["", "a", "ab x é😀", "a" * 40 + "b", "x" * 100, "ab" * 50, "a" * 1000,
          "a" * 1024, "é" * 1024, ("lorem ipsum, dolor " * 60)[:1024], "a\nb\r\nc"]
LONG_VALUES = ["a" * 1025, "a" * 5000]
NAMES = ["n", "n.a", "n" + "a" * 1000, "n" + "a" * 1021]


def regex_literal(pattern: str) -> str:
    """``r'...'`` for a pattern: a bare quote becomes ``\\'`` (the same to PCRE2)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append("\\'" if ch == "'" else ch)
        i += 1
    return "r'" + "".join(out) + "'"


def attempt(fn: Any, *args: Any) -> str:
    try:
        result = fn(*args)
    except octopus.OctopusError as e:
        return type(e).__name__
    except Exception as e:  # any other exception is what the fuzz looks for
        return f"BUG {type(e).__name__}: {e} {traceback.format_exc(limit=3)}"
    return "ok" if result is not None else "none"


def run_pattern(engine: octopus.Engine, pattern: str, texts: list[str]) -> dict[str, Any]:
    rx = regex_literal(pattern)
    outcomes: dict[str, str] = {}
    for label, q in (("name", rx), ("value", "_ { s: " + rx + " }"),
                     ("long", "_ { long: " + rx + " }")):
        outcomes[f"get_names/{label}"] = attempt(engine.get_names, q)
        outcomes[f"get/{label}"] = attempt(engine.get, q)
        outcomes[f"get_all/{label}"] = attempt(engine.get_all, q)
        outcomes[f"exists/{label}"] = attempt(engine.exists, q)
        trigger = None
        try:
            trigger = engine.watch(q, lambda event: None)
            outcomes[f"watch/{label}"] = "installed"
        except octopus.OctopusError as e:
            outcomes[f"watch/{label}"] = type(e).__name__
        for i, value in enumerate(VALUES + LONG_VALUES):
            # triggers see every value under s; over the limit only on a record that
            # is deleted again, so that queries on s keep running on short texts
            name = "wlong" if len(value) > 1024 else "w"
            outcomes[f"set/{label}/{i}"] = attempt(engine.set, "%s { s: %s, long: %s }",
                                                   name, value, value)
        engine.delete("wlong")
        if trigger is not None:
            engine.remove_trigger(trigger)
        sub = None
        try:
            sub = engine.subscribe(q, lambda event: None)
            outcomes[f"subscribe/{label}"] = "installed"
        except octopus.OctopusError as e:
            outcomes[f"subscribe/{label}"] = type(e).__name__
        for i, value in enumerate(VALUES + LONG_VALUES):
            name = NAMES[i % len(NAMES)]
            outcomes[f"publish/{label}/{i}"] = attempt(
                engine.publish, "%s { s: %s, long: %s }", name, value, value)
        if sub is not None:
            engine.unsubscribe(sub)
    # %r passes the pattern as a parameter, with no quoting at all
    outcomes["get_names/%r"] = attempt(engine.get_names, "_ { s: %r }", pattern)
    outcomes["exists/%r name"] = attempt(engine.exists, "%r", pattern)
    try:
        engine.remove_trigger(engine.watch("%r", lambda event: None, pattern))
        outcomes["watch/%r"] = "installed"
    except octopus.OctopusError as e:
        outcomes["watch/%r"] = type(e).__name__
    engine.flush()
    janus = runtime().janus
    oracle = []
    for text in texts:
        answer = janus.query_once("regex_oracle:oracle(P, T, O, L)", {"P": pattern, "T": text})
        oracle.append((text, str(answer["O"]).lower(), str(answer["L"]).lower()))
    return {"outcomes": outcomes, "oracle": oracle}


def main() -> None:
    job = json.load(sys.stdin)
    with octopus.Engine() as engine:
        runtime().consult(HERE / "regex_oracle.pl")
        for i, value in enumerate(VALUES):
            engine.set("%s { s: %s }", NAMES[i % len(NAMES)] + str(i), value)
        for i, value in enumerate(LONG_VALUES):
            engine.set("%s { long: %s }", "long" + str(i), value)
        for i, pattern in enumerate(job["patterns"]):
            print(json.dumps({"start": i}), flush=True)
            print(json.dumps(run_pattern(engine, pattern, job["texts"])), flush=True)


if __name__ == "__main__":
    main()
