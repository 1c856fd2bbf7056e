"""The limits on regular expressions and names (docs/decisions.md, Language), each driven
past its bound: the error is a QueryError that names the limit, and nothing changes.

Only patterns that never aborted the process run here (quadratic scans, catastrophic
backtracking, long texts); the ones that did are in test_regex_abort.py, in a child.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import octopus
from octopus import Event, Mode, QueryError
from octopus._prolog import runtime
from octopus.record import MAX_NAME_LENGTH


def limit(name: str) -> int:
    return int(runtime().janus.query_once("octopus_match:regex_limit(N, V)", {"N": name})["V"])


def collect() -> tuple[list[Event], object]:
    got: list[Event] = []
    return got, got.append


@pytest.fixture
def budget() -> Iterator[None]:
    """Restore the query CPU budget flags after a test changes them."""
    janus = runtime().janus
    flags = ("octopus_regex_cpu_base", "octopus_regex_cpu_per_text")
    saved = {f: janus.query_once("current_prolog_flag(F, V)", {"F": f})["V"] for f in flags}
    yield
    for f, v in saved.items():
        janus.query_once("set_prolog_flag(F, V)", {"F": f, "V": v})


def set_budget(base: float, per_text: float) -> None:
    janus = runtime().janus
    janus.query_once("set_prolog_flag(octopus_regex_cpu_base, V)", {"V": base})
    janus.query_once("set_prolog_flag(octopus_regex_cpu_per_text, V)", {"V": per_text})


def test_the_limits_are_the_documented_ones() -> None:
    assert limit("subject_length") == 1024
    assert limit("pattern_length") == 1000
    assert limit("capture_groups") == 64
    assert limit("match_steps") == 20000
    assert limit("trigger_match_steps") == 5000
    assert limit("quick_steps") == 16
    assert limit("name_length") == MAX_NAME_LENGTH == 1024


# --- the text a regex runs on ----------------------------------------------------------

def test_a_regex_runs_on_texts_up_to_the_subject_limit(engine: octopus.Engine) -> None:
    engine.set("ok { s: %s }", "a" * 1023 + "z")
    assert engine.get_names("_ { s: r'z$' }") == ["ok"]
    engine.set("over { s: %s }", "a" * 1024 + "z")
    with pytest.raises(QueryError, match=r"attribute 's'.*1,025 characters.*at most 1,024"):
        engine.get_names("_ { s: r'z$' }")
    # other queries are unaffected; an exact name with the regex still runs it
    assert engine.get_names("_ { s: _ }") == ["ok", "over"]
    with pytest.raises(QueryError):
        engine.get("over { s: r'z$' }")


def test_a_trigger_does_not_match_a_text_over_the_limit(engine: octopus.Engine) -> None:
    got, handler = collect()
    engine.watch("_ { s: r'z' }", handler, on=Mode.ON_SET)
    engine.set("long { s: %s }", "z" * 1025)       # the write is never refused
    engine.set("short { s: %s }", "z" * 1024)
    engine.flush()
    assert [e.record.name for e in got if e.record] == ["short"]
    assert engine.get_names("_") == ["long", "short"]


def test_a_quadratic_scan_stops_at_the_match_limit(engine: octopus.Engine) -> None:
    # PCRE2 counts its match limit per start position, so this pattern used to scan
    # n^2/2 steps unhindered (6.3 s on 40,000 characters); the whole search is bounded now.
    engine.set("victim { s: %s }", "x" * 1024)
    with pytest.raises(QueryError, match="match limit of 20,000 steps on attribute 's'"):
        engine.get_names("_ { s: r'\\w*?[^x]' }")
    assert engine.get_names("_ { s: r'\\w*?x' }") == ["victim"]


@pytest.mark.parametrize("pattern", [r".*bar", r".*?bar", r".+ar", r"(?m)^.*bar", r"(?m)^.*ar$"])
def test_a_leading_dot_star_stays_linear_on_long_texts(engine: octopus.Engine,
                                                       pattern: str) -> None:
    text = ("lorem ipsum dolor sit amet, " * 40)[:1020] + "\nbar"
    engine.set("doc { s: %s }", text)
    engine.set("other { s: %s }", text.replace("bar", "baz"))
    assert engine.get_names(f"_ {{ s: r'{pattern}' }}") == ["doc"]


@pytest.mark.parametrize(("pattern", "expected"), [
    (r"(?m)^b", ["nl"]),            # multiline anchors see every line
    (r".*b", ["ab", "nl"]),         # a leading .* is tried from line starts only
    (r"^b", []),
    (r"\Gb", []),                   # \G is the start of the text, as before
    (r"(?<=a)b", ["ab"]),           # a lookbehind sees what precedes the match
    (r"a$", ["a_nl"]),              # $ before a final newline
    (r"x(*FAIL)|b", ["ab", "nl"]),
    (r"(*ACCEPT)q", ["a_nl", "ab", "nl"]),
    (r"(*CRLF)(*UTF)b", ["ab", "nl"]),   # pattern-start options keep working
])
def test_the_bounded_search_means_what_pcre_means(engine: octopus.Engine, pattern: str,
                                                  expected: list[str]) -> None:
    engine.set("ab { s: 'ab' }")
    engine.set("nl { s: %s }", "a\nb")
    engine.set("a_nl { s: %s }", "a\n")
    assert engine.get_names(f"_ {{ s: r'{pattern}' }}") == expected


# --- patterns refused when compiled ----------------------------------------------------

@pytest.mark.parametrize(("pattern", "message"), [
    ("a" * 1001, "1,001 characters, more than the 1,000"),
    ("(a)" * 65, "more than 64 capturing groups"),
    ("(?:a?){300}", "too large once compiled"),
    ("(?:(?:a?){20}){20}", "too large once compiled"),
    ("(*LIMIT_MATCH=99999999)a", "may not set its own match limits"),
    ("(*LIMIT_HEAP=1)a", "may not set its own match limits"),
    ("(*COMMIT)a", r"\(\*COMMIT\) is not supported"),
    ("a(*SKIP)b|a", r"\(\*SKIP\) is not supported"),
    ("(*NOTEMPTY)a?", r"\(\*NOTEMPTY\) is not supported"),
    ("a\\Cb", "\\\\C is disabled"),
    ("(?x)a#comment", "must not end inside"),
    ("\\Qa", "must not end inside"),
    ("(a)(?1)", "recursion and subroutine calls"),
    ("\\g<n>(?<n>a)", "recursion and subroutine calls"),
    ("(?<a_Z>x)", "may not end in _Z"),
])
def test_refused_patterns(engine: octopus.Engine, pattern: str, message: str) -> None:
    engine.set("x { s: 'a' }")
    got, handler = collect()
    with pytest.raises(QueryError, match=message):
        engine.get_names("_ { s: " + regex(pattern) + " }")
    with pytest.raises(QueryError, match=message):
        engine.watch(regex(pattern), handler)
    engine.set("y { s: 'a' }")                     # no trigger was left behind
    engine.flush()
    assert got == []


def regex(pattern: str) -> str:
    return "r'" + pattern.replace("'", "\\'") + "'"


def test_patterns_at_the_limits_are_accepted(engine: octopus.Engine) -> None:
    engine.set("x { s: 'a' }")
    assert engine.get_names("_ { s: " + regex("a" * 1000) + " }") == []
    assert engine.get_names("_ { s: " + regex("(a)" * 64) + " }") == []
    assert engine.get_names("_ { s: r'(?:a?){200}' }") == ["x"]
    assert engine.get_names("_ { s: r'(?-i)A|a' }") == ["x"]   # options, not a call


# --- one query's CPU -------------------------------------------------------------------

@pytest.mark.usefixtures("budget")
def test_a_query_over_its_regex_budget_stops(engine: octopus.Engine) -> None:
    for i in range(50):
        engine.set("%s { s: %s }", f"r{i}", "a" * 900)
    set_budget(0.0, 0.0)
    with pytest.raises(QueryError, match=r"stopped after .* CPU time"):
        engine.get_names("_ { s: r'b' }")
    with pytest.raises(QueryError, match="stopped after"):
        engine.exists("r'^r.*b'")
    # queries without regexes, and exact names, are never charged
    assert len(engine.get_names("_ { s: _ }")) == 50
    assert engine.get_names("r1") == ["r1"]
    set_budget(1.0, 0.0001)
    assert engine.get_names("_ { s: r'b' }") == []


@pytest.mark.usefixtures("budget")
def test_the_budget_stops_a_slow_pattern_over_many_records(engine: octopus.Engine) -> None:
    # Each search scans quadratically without backtracking (about 1 ms for 1,000
    # characters, no match limit involved); 300 of them take ~0.4 s. With a budget of
    # 10 ms and no allowance per text the query stops early.
    for i in range(300):
        engine.set("%s { s: %s }", f"r{i}", "a" * 1000)
    set_budget(0.01, 0.0)
    with pytest.raises(QueryError, match="stopped after"):
        engine.get_names("_ { s: r'[a-z]*[0-9]' }")


# --- triggers and subscriptions --------------------------------------------------------

@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(\w+\s?)*$", r"\w*?[^x]", r"(.*?,){11}P",
                                     r"(a|aa)*$"])
def test_costly_trigger_patterns_are_refused_at_install(engine: octopus.Engine,
                                                         pattern: str) -> None:
    got, handler = collect()
    with pytest.raises(QueryError, match="too costly for a trigger or subscription"):
        engine.watch("_ { s: " + regex(pattern) + " }", handler)
    with pytest.raises(QueryError, match="too costly"):
        engine.subscribe(regex(pattern), handler)
    assert engine.publish("m { s: 'aaa' }") == 0   # nothing was installed
    engine.set("m { s: 'aaa' }")
    engine.flush()
    assert got == []


def test_a_trigger_slow_on_a_crafted_value_is_removed_not_paid_for_by_every_write(
        engine: octopus.Engine, caplog: pytest.LogCaptureFixture) -> None:
    # This pattern passes the probes at install, yet costs ~10 ms of CPU on a value made
    # for it: rather than tax every later write, the trigger is removed (its owner gets
    # REMOVED and a warning is logged); ordinary triggers on the same change go on.
    got, handler = collect()
    slow = engine.watch("_ { s: r'(?:\\p{Greek}?){20}(?=\\p{Greek}*x)' }", handler)
    fine = engine.watch("_ { s: r'^α' }", handler)
    sub = engine.subscribe("_ { s: r'(?:\\p{Greek}?){20}(?=\\p{Greek}*x)' }", handler)
    with caplog.at_level(logging.WARNING, logger="octopus.events"):
        engine.set("v { s: %s }", "α" * 1024)          # the write goes through
        engine.publish("m { s: %s }", "α" * 1024)
        engine.flush()
    assert engine.get("v")["s"] == "α" * 1024
    removed = {e.trigger_id for e in got if e.mode == Mode.REMOVED}
    assert removed == {slow.id, sub.id}
    assert [e.trigger_id for e in got if e.mode & Mode.ON_SET] == [fine.id]
    assert engine.stats()["triggers"] == 1 and engine.stats()["subscriptions"] == 0
    assert f"trigger {slow.id}" in caplog.text and "CPU budget" in caplog.text


@pytest.mark.parametrize("pattern", [r"^(web|db|cache)\d+$", r"error|warn", r"^hw\.pci\.",
                                     r"\bfoo\b", r".*x$", r"[0-9a-f]{40}"])
def test_ordinary_trigger_patterns_install(engine: octopus.Engine, pattern: str) -> None:
    _, handler = collect()
    engine.remove_trigger(engine.watch(regex(pattern), handler))
    engine.unsubscribe(engine.subscribe("_ { s: " + regex(pattern) + " }", handler))


# --- names -----------------------------------------------------------------------------

def test_names_are_bounded_however_they_arrive(engine: octopus.Engine) -> None:
    ok, over = "n" * MAX_NAME_LENGTH, "n" * (MAX_NAME_LENGTH + 1)
    engine.set(ok + " { k: 1 }")
    engine.set("%s { k: 2 }", ok)
    with pytest.raises(octopus.ParseError, match="at most 1024 characters"):
        engine.set(over + " { k: 1 }")
    with pytest.raises(octopus.ParameterError):
        engine.set("%s { k: 1 }", over)
    with pytest.raises(QueryError):
        engine.set_many([(over, {"k": 1})])
    with pytest.raises(ValueError):
        octopus.Record(over)
    with pytest.raises(QueryError):
        engine.publish("%s { k: 1 }", over)
    with pytest.raises(QueryError):                # a key is a name too
        engine.set("x { %s: 1 }".replace("%s", over))
    # a sequential name that would grow past the limit is refused, and nothing changes
    base = "s" * MAX_NAME_LENGTH
    revision = engine.revision
    with pytest.raises(QueryError, match="at most 1,024 characters"):
        engine.set(base + " { k: 1 }", sequential=True)
    assert engine.revision == revision
    assert engine.get_names("_") == [ok]
