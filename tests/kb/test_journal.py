"""The sandboxed knowledge base of a durable engine (docs/knowledge-base.md, "Durable
engines"): what was loaded comes back through the same sandbox and within the engine's
limits; what was refused never reaches the journal, or is cancelled in it.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import octopus
from octopus import KnowledgeBaseError
from octopus.durable.format import payloads, scan_journal
from octopus.kb import Limits

ROOT = Path(__file__).resolve().parents[2]


def kb_entries(d: Path) -> list[list[Any]]:
    """The knowledge-base entries of every journal in ``d``, in order."""
    found = []
    for path in sorted(d.glob("journal-*.log")):
        for _, payload in payloads(scan_journal(path)):
            if payload[0] in ("k", "r", "x"):
                found.append(payload)
    return found


RULES = """\
:- use_module(library(lists)).
:- dynamic(seen/1).
:- op(700, xfx, ===>).
a ===> b.
b ===> c.
reach(X, Y) :- X ===> Y.
reach(X, Z) :- X ===> Y, reach(Y, Z).
:- findall(Y, reach(a, Y), Ys), length(Ys, N), assertz(seen(N)).
"""


def test_sandboxed_loads_come_back_after_a_restart(tmp_path: Path) -> None:
    f = tmp_path / "rules.pl"
    f.write_text(RULES)
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        assert e.consult(f) == 4
        e.add_facts("colour(red). colour(green).")
        e.kb.add_rows("edge", [(1, 2), (2, 3)])
        before = (e.prolog("reach(a, Y)"), e.prolog("seen(N)"), e.prolog("colour(C)"),
                  e.prolog("edge(A, B)"))
    f.unlink()                          # the journal kept the text, not the file name
    with octopus.Engine(path=d) as e:
        after = (e.prolog("reach(a, Y)"), e.prolog("seen(N)"), e.prolog("colour(C)"),
                 e.prolog("edge(A, B)"))
        assert after == before == ([{"Y": "b"}, {"Y": "c"}], [{"N": 2}],
                                   [{"C": "red"}, {"C": "green"}],
                                   [{"A": 1, "B": 2}, {"A": 2, "B": 3}])
        # the replayed knowledge base is as confined as the one it came from
        for goal in ("exists_file('/etc/hostname')", "set_prolog_flag(x, y)", "sleep(1)"):
            with pytest.raises(KnowledgeBaseError, match="not allowed"):
                e.prolog(goal)


def test_a_load_refused_while_reading_is_never_journaled(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.add_facts("ok(1).")
        for text in (":- table(p/1).\np(1).\n", "p(X) :- lists:append([], [], X).\n",
                     ":- initialization(halt, main).\n", "p(1).\n:- multifile(q/1).\n"):
            with pytest.raises(KnowledgeBaseError):
                e.add_facts(text)
    assert kb_entries(d) == [["k", None, "ok(1)."]]


@pytest.mark.parametrize("directive", [
    "shell(ls)",                                    # refused by the sandbox at the commit
    "exists_file('/etc/hostname')",
    "between(1, inf, _), fail",                     # past the inference limit
    "use_module(library(process))",                # not one of the pure libraries
    "fail",
])
def test_a_load_refused_at_its_commit_is_cancelled(tmp_path: Path, directive: str) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d, kb_limits=Limits(inferences=100_000)) as e:
        e.add_facts("ok(1).")
        with pytest.raises(KnowledgeBaseError, match=r"nothing was loaded|not allowed"):
            e.add_facts(f"bad(1).\n:- {directive}.\n")
        e.add_facts("ok(2).")
        assert e.prolog("ok(X)") == [{"X": 1}, {"X": 2}]
    # checked when it runs, after it was journaled: cancelled
    assert [entry[0] for entry in kb_entries(d)] == ["k", "k", "x", "k"]
    with octopus.Engine(path=d) as e:
        assert e.prolog("ok(X)") == [{"X": 1}, {"X": 2}]
        assert e.prolog("current_predicate(bad/1)") == []


HEAVY = "total(S) :- aggregate_all(sum(X), between(1, 200000, X), S).\n:- total(S), S > 0.\n"


def test_replay_runs_within_the_engines_kb_limits(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    big = Limits(inferences=5_000_000)
    small = Limits(inferences=50_000)
    with octopus.Engine(path=d, kb_limits=big) as e:
        assert e.kb.limits == big
        e.add_facts(HEAVY)                  # the directive takes ~200k inferences
    # the limits apply to the replay too: the load fails again (logged) ...
    with caplog.at_level(logging.WARNING, logger="octopus.durable"), \
            octopus.Engine(path=d, kb_limits=small) as e, \
            pytest.raises(KnowledgeBaseError, match="Unknown procedure: total/1"):
        e.prolog("total(S)")
    assert "inference limit" in caplog.text
    with octopus.Engine(path=d, kb_limits=big) as e:
        # ... and is still in the journal, for an engine given the limits it needs
        assert e.prolog("total(S)", timeout=30) == [{"S": 20000100000}]


def test_kb_limits_must_be_limits(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="kb_limits must be a Limits"):
        octopus.Engine(kb_limits={"timeout": 1})        # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


REPLAY_ESCAPE = textwrap.dedent("""
    import sys
    import octopus
    d, marker = sys.argv[1], sys.argv[2]
    with octopus.Engine(path=d) as e:
        e.add_facts("ok(1).")
        # Entries as a version without the sandbox would have journaled them.
        for text in (":- halt.\\n", f":- shell('touch {marker}').\\n",
                     "p(1).\\n:- octopus_store:store_destroy(_, _).\\n"):
            e._persistence.acknowledge(e._persistence.log_kb_text(None, text))
        e.add_facts("ok(2).")
    with octopus.Engine(path=d) as e:
        print("alive", e.prolog("ok(X)"), e.prolog("current_predicate(p/1)"), flush=True)
""")


def test_journaled_loads_the_sandbox_refuses_are_refused_on_replay(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run([sys.executable, "-c", REPLAY_ESCAPE, str(tmp_path / "d"),
                           str(marker)], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "alive [{'X': 1}, {'X': 2}] []"
    assert done.stderr.count("fails again on replay") == 3, done.stderr
    assert not marker.exists()
