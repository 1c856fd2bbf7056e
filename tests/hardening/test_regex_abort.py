"""One regular expression must never end the process.

pcre4pl (SWI-Prolog's PCRE2 binding) fails an assertion, and so aborts, on every
pcre2_match() error code it does not know: a recursion loop (-52), the depth limit
(-53), the heap limit (-63). These tests run patterns through every path that reaches
PCRE2 in a child process (tests/hardening/regex_child.py), so an abort is a failed test
and not a lost run: the known killers, then patterns generated from PCRE2's syntax. The
child also checks that the engine's bounded search finds a match exactly when PCRE2's
own unanchored search does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .pcre_syntax import patterns, short_texts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Each of these ended the process before the fix: recursion loops (-52), and a deep
# backtrack on a long value under the old (*LIMIT_DEPTH=10000) prefix (-53).
KILLERS = ["((?1))", "(?R)", "(?0)", "(?<a>(?&a))", "(a|(?1))", "(a|ab)*[bc]",
           "(?:(a)|b)*[bc]", "^(a|b?)*$c"]


def run_child(pats: list[str], texts: list[str], timeout: float = 900) -> list[dict[str, Any]]:
    """Run the patterns in a child process; fail the test if it does not exit cleanly."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(HERE / "regex_child.py")],
                          input=json.dumps({"patterns": pats, "texts": texts}),
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0:
        started = [line["start"] for line in lines if "start" in line]
        culprit = pats[started[-1]] if started else None
        pytest.fail(f"the child process ended with {proc.returncode} on pattern "
                    f"{culprit!r}:\n{proc.stderr[-4000:]}")
    results = [line for line in lines if "outcomes" in line]
    assert len(results) == len(pats)
    return results


def check(pats: list[str], results: list[dict[str, Any]]) -> None:
    for pattern, result in zip(pats, results, strict=True):
        bugs = {k: v for k, v in result["outcomes"].items() if v.startswith("BUG")}
        assert not bugs, (pattern, bugs)
        for text, ours, plain in result["oracle"]:
            if ours in ("true", "false") and plain in ("true", "false"):
                assert ours == plain, (pattern, text, ours, plain)


def test_known_killers_are_query_errors() -> None:
    results = run_child(KILLERS, ["a", "ab", "aab", ""])
    check(KILLERS, results)
    for pattern, result in zip(KILLERS, results, strict=True):
        outcomes = result["outcomes"]
        if "(?" in pattern:                         # recursion: refused at once
            assert outcomes["get_names/value"] == "QueryError", pattern
            assert outcomes["watch/value"] == "QueryError", pattern
            assert outcomes["subscribe/name"] == "QueryError", pattern
            assert outcomes["get_names/%r"] == "QueryError", pattern
            assert outcomes["watch/%r"] == "QueryError", pattern
        assert outcomes["get_names/long"] == "QueryError", pattern  # over the subject limit
        assert all(v in ("ok", "none", "installed", "QueryError", "NotFound")
                   for v in outcomes.values()), (pattern, outcomes)


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=list(HealthCheck))


@fuzz_settings(3)
@given(pats=st.lists(patterns, min_size=30, max_size=30),
       texts=st.lists(short_texts, min_size=6, max_size=6))
def test_generated_patterns_never_end_the_process(pats: list[str], texts: list[str]) -> None:
    check(pats, run_child(pats, texts))


@pytest.mark.slow
@fuzz_settings(150)
@given(pats=st.lists(patterns, min_size=60, max_size=60),
       texts=st.lists(short_texts, min_size=12, max_size=12))
def test_generated_patterns_never_end_the_process_long(pats: list[str],
                                                       texts: list[str]) -> None:
    check(pats, run_child(pats, texts))
