"""Knowledge-base isolation: goals and loaded files cannot reach the store, another
engine, a file, a process, the process's flags or its exit.

Every escape is attempted in a subprocess: an escape that works (halt/0 ending the
process, a shell command) fails the test instead of killing pytest. Each subprocess
runs a batch of attempts and prints one line per attempt; the test checks that the
process lived to the end, that every attempt was refused with a KnowledgeBaseError, and
that nothing outside the knowledge base changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import octopus
from octopus import KnowledgeBaseError

ROOT = Path(__file__).resolve().parents[2]

#: Goals that must be refused. ``{store}``, ``{other}`` and ``{marker}`` are filled in
#: by the subprocess (the engine's store module, another engine's knowledge-base
#: module, a file that must not come into existence); ``@NAME`` entries run with the
#: binding M=<that module name> instead, so the name arrives as data.
ESCAPES = [
    # ending the process
    "halt", "halt(3)", "call(halt)", "G = halt, call(G)", "G = halt, G", "findall(x, halt, _)",
    "forall(true, halt)", "\\+ halt", "catch(halt, _, true)", "once(halt)", "ignore(halt)",
    "freeze(X, halt), X = 1", "format(\"~@\", [halt])", "format(atom(_), \"~@\", [halt])",
    "M = system, M:halt", "system:halt", "lists:halt", "user:halt", "halt@system",
    "call(system:halt)", "abort", "thread_create(halt, _, [])", "thread_signal(main, halt)",
    "engine_create(x, halt, E), engine_next(E, _)", "atom_to_term(halt, G, _), call(G)",
    "term_to_atom(G, halt), G", "prolog_flag(x, _), halt",
    # processes
    "shell('touch {marker}')", "shell('touch {marker}', _)",
    "process_create(path(touch), ['{marker}'], [])",
    "py_call(os:system('touch {marker}'), _)", "janus:py_call(os:system('touch {marker}'))",
    # files
    "open('{marker}', write, S), close(S)", "tell('{marker}')", "see('/etc/hostname')",
    "read_file_to_string('/etc/hostname', _, [])", "exists_file('/etc/hostname')",
    "use_module(library(process))", "use_module('{marker}')", "consult('{marker}')",
    "ensure_loaded(library(lists))", "load_files(['{marker}'], [])",
    "with_output_to(string(_), listing(_))",
    # the store and other modules
    "{store}:rec(N, R, D)", "{store}:assertz(rec(evil, 1, _{{}}))",
    "assertz({store}:rec(evil, 1, _{{}}))", "retractall({store}:rec(_, _, _))",
    "M = {store}, M:rec(N, R, D)", "atom_concat(octopus_, db, P), M = P, M:rec(_, _, _)",
    "octopus_store:store_count({store}, N)", "octopus_store:store_destroy({store}, _)",
    "clause({store}:rec(A, B, C), true)", "current_predicate({store}:P)",
    "{other}:secret(X)", "M = {other}, M:secret(X)", "assertz({other}:secret(2))",
    "@M:rec(N, R, D)", "@M:store_count(N)", "@assertz(M:rec(evil, 1, _{{}}))",
    "@octopus_store:store_count(M, N)", "@M:secret(X)", "@call(M:secret, X)",
    "@format(atom(_), \"~@\", [M:secret(X)])",
    # code, not facts, and the process's state
    "assertz((p :- halt)), p", "asserta((p :- true))", "retract((p :- true))",
    "abolish(p/1)", "dynamic(q/1)", "set_prolog_flag(double_quotes, codes)",
    "set_prolog_flag(occurs_check, error)", "set_prolog_stack(global, limit(100000))",
    "op(700, xfx, ===>)", "nb_setval(k, v)", "b_setval(k, v)", "recorda(k, v)",
    "flag(k, _, 1)", "set_module(base(user))", "style_check(-singleton)",
    "garbage_collect", "abolish_all_tables", "sleep(5)", "print_message(error, x)",
    "format(user_error, \"x\", [])", "writeln(user_error, x)", "read_term(user_input, _, [])",
    "setup_call_cleanup(true, true, halt)", "call_cleanup(true, true)", "undo(true)",
    "'$set_source_module'(user)", "'$syspreds':'$set_source_module'(_, user)",
]

ESCAPE_RUNNER = textwrap.dedent("""
    import json, sys
    import octopus
    from octopus import KnowledgeBaseError
    marker, escapes = sys.argv[1], json.loads(sys.argv[2])
    engine, other = octopus.Engine(), octopus.Engine()
    engine.set("x { a: 1 }")
    engine.add_facts("p(1).")
    other.add_facts("secret(1).")
    store, kb_other = engine._core.store.module, other.kb.module
    for escape in escapes:
        bind = escape.startswith("@")
        modules = {"store": store, "other": kb_other, "marker": marker}
        goal = escape[1:] if bind else escape.format(**modules)
        bindings = {"M": store if "secret" not in goal else kb_other} if bind else {}
        print("trying", escape, flush=True)
        try:
            result = engine.prolog(goal, **bindings)
        except KnowledgeBaseError as e:
            print("refused", escape, "|", e, flush=True)
        else:
            print("ALLOWED", escape, "|", result, flush=True)
    assert engine.get_names("_") == ["x"], engine.get_names("_")
    assert engine.count() == 1
    assert engine.set("y { a: 1 }").name == "y"
    assert engine.prolog("p(X)") == [{"X": 1}]
    assert other.prolog("secret(X)") == [{"X": 1}]
    assert not engine.prolog("current_prolog_flag(double_quotes, codes)")
    print("done", flush=True)
""")


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_goals_cannot_escape(tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    done = _run(ESCAPE_RUNNER, str(marker), json.dumps(ESCAPES))
    lines = done.stdout.splitlines()
    last = next((line for line in reversed(lines) if line.startswith("trying")), "")
    assert done.returncode == 0, f"the process ended at {last!r}: {done.stderr[-2000:]}"
    assert lines[-1] == "done", done.stderr[-2000:]
    allowed = [line for line in lines if line.startswith("ALLOWED")]
    assert not allowed, allowed
    assert sum(line.startswith("refused") for line in lines) == len(ESCAPES)
    assert not marker.exists()
    assert "x\n" not in done.stderr        # nothing printed to the process's streams


#: Files that must not load. Each is loaded alone; nothing of it may stay.
BAD_FILES = [
    ":- halt.", ":- initialization(halt).", ":- initialization(halt, main).",
    ":- initialization(main, main).", "f(1). :- halt(1).", ":- G = halt, G.",
    ":- shell('touch {marker}').", ":- use_module(library(process)).",
    ":- use_module('{marker}').", ":- ensure_loaded('{marker}').", ":- consult('{marker}').",
    ":- include('/etc/hostname').", ":- use_module(library('../../x')).",
    ":- use_module(library(apply_macros)).", ":- set_prolog_flag(double_quotes, codes).",
    ":- table t/1.", ":- multifile user:portray/1.", "user:portray(_) :- halt.",
    ":- assertz(octopus_store:x).", ":- M = octopus_store, M:assertz(x).",
    ":- dynamic(octopus_store:rec/3).", "p :- lists:append(_, _, _).", "sleep(_) :- true.",
    "catch(_, _, _).", ":- assertz((q :- halt)).", ":- open('{marker}', write, _).",
    ":- format(user_error, \"x\", []).", ":- sleep(10).", ":- abort.",
]

FILE_RUNNER = textwrap.dedent("""
    import json, sys
    import octopus
    from octopus import KnowledgeBaseError
    marker, files = sys.argv[1], json.loads(sys.argv[2])
    engine = octopus.Engine()
    engine.set("x { a: 1 }")
    for text in files:
        print("trying", text, flush=True)
        try:
            engine.add_facts(text.replace("{marker}", marker))
        except KnowledgeBaseError as e:
            print("refused", text, "|", e, flush=True)
        else:
            print("ALLOWED", text, flush=True)
    assert engine.get_names("_") == ["x"]
    assert engine.prolog("current_predicate(f/1)") == []
    assert engine.prolog("current_predicate(q/0)") == []
    assert not engine.prolog("current_prolog_flag(double_quotes, codes)")
    print("done", flush=True)
""")


def test_loaded_files_cannot_escape(tmp_path: Path) -> None:
    marker = tmp_path / "escaped.pl"
    done = _run(FILE_RUNNER, str(marker), json.dumps(BAD_FILES))
    lines = done.stdout.splitlines()
    last = next((line for line in reversed(lines) if line.startswith("trying")), "")
    assert done.returncode == 0, f"the process ended at {last!r}: {done.stderr[-2000:]}"
    assert lines[-1] == "done", done.stderr[-2000:]
    assert not [line for line in lines if line.startswith("ALLOWED")]
    assert not marker.exists()


RACE_RUNNER = textwrap.dedent("""
    import sys, threading
    import octopus
    from octopus import KnowledgeBaseError
    engine = octopus.Engine()
    engine.add_facts("r(_).")
    asked = threading.Semaphore(0)
    refused = []

    def ask():
        while True:
            asked.release()
            try:
                engine.prolog("between(1, 100000, X), r(X), fail")
            except KnowledgeBaseError as e:
                refused.append(str(e))
                return

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(6):      # every thread is in (or between) its goals
        asked.acquire()
    # A rule that would run a command, loaded while goals that call r/1 are running:
    # the load waits for them, and the goals after it are checked again.
    engine.add_facts("r(_) :- shell('touch %s')." % sys.argv[1])
    for t in threads:
        t.join(60)
    assert len(refused) == 3 and all("shell" in r for r in refused), refused

    # An iterator checked before the load is checked again before its next step.
    engine.add_facts("s(1). s(2). t(X) :- s(X).")
    it = engine.prolog_iter("t(X)")
    assert next(it) == {"X": 1}
    engine.add_facts("t(_) :- shell('touch %s')." % sys.argv[1])
    try:
        next(it)
    except KnowledgeBaseError as e:
        assert "shell" in str(e)
    else:
        raise AssertionError("the iterator went on after an unsafe load")
    print("done", flush=True)
""")


def test_goals_never_run_code_loaded_after_their_check(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = _run(RACE_RUNNER, str(marker))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "done"
    assert not marker.exists()


def test_allowed_goals(engine: octopus.Engine) -> None:
    """What a knowledge base may do (docs/knowledge-base.md lists it)."""
    engine.add_facts("p(1). p(2). p(3).\nq(X) :- p(X), X > 1.\n:- dynamic(seen/1).")
    cases = {
        "X is 2 ** 10 + max(3, 4) mod 3": {"X": 1025},
        "findall(_X, q(_X), L), sum_list(L, S), length(L, N)": {"L": [2, 3], "S": 5, "N": 2},
        "aggregate_all(count, p(_), C)": {"C": 3},
        "between(1, 3, X), X > 2": {"X": 3},
        "format(atom(A), \"~w-~a\", [f(x), b])": {"A": "f(x)-b"},
        "with_output_to(string(S), (writeln(hi), format(\"~w\", [there])))": {"S": "hi\nthere"},
        "msort([b, a], L), sort(0, @>=, [1, 3, 2], D)": {"L": ["a", "b"], "D": [3, 2, 1]},
        "atom_codes(A, \"ab\"), upcase_atom(A, U), split_string(\"a b\", \" \", \"\", P)":
            {"A": "ab", "U": "AB", "P": ["a", "b"]},
        "maplist([_X, _Y]>>(_Y is _X * 2), [1, 2], L)": {"L": [2, 4]},
        "foldl([_X, _A0, _A]>>(_A is _A0 + _X), [1, 2, 3], 0, S)": {"S": 6},
        "catch(_ is foo + 1, error(type_error(T, _), _), true)": {"T": "evaluable"},
        "assertz(seen(1)), retract(seen(1)), \\+ seen(_)": {},
        "forall(member(_X, [2, 3]), q(_X))": {},
        "writeln(to_nowhere), format(\"~w~n\", [nowhere]), P = printed": {"P": "printed"},
        "string_concat(\"a\", B, \"ab\"), sub_atom(hello, 1, 3, _, S)": {"B": "b", "S": "ell"},
        "length(L, 2), nth1(1, L, a), last(L, b)": {"L": ["a", "b"]},
        "get_time(_T), _T > 0, succ(3, S)": {"S": 4},
    }
    for goal, solution in cases.items():
        assert engine.prolog_once(goal) == solution, goal
    # a goal calls only predicates that exist when it starts (declare the others)
    with pytest.raises(KnowledgeBaseError, match="Unknown procedure: fresh/1"):
        engine.prolog("assertz(fresh(1)), fresh(X)")
    # assert and retract facts into the knowledge base itself
    engine.prolog("assertz(fact(7)), asserta(fact(6)), retract(fact(7))")
    assert engine.prolog("fact(X)") == [{"X": 6}]
    # a module-qualified call into the knowledge base's own module is fine
    assert engine.prolog("M:p(X)", M=engine.kb.module) == [{"X": 1}, {"X": 2}, {"X": 3}]


def test_refusals_are_typed_and_change_nothing(engine: octopus.Engine) -> None:
    engine.add_facts("p(1).")
    engine.set("x { a: 1 }")
    for goal, why in [("assertz(p(2)), shell(ls)", "shell"),
                      ("assertz(p(2)), sleep(1)", "sleep/1"),
                      ("assertz(p(2)), lists:append(_, _, _)", "module lists"),
                      ("assertz(p(2)), G = true, call(G)", "known"),
                      ("assertz(p(2)), assertz((r :- true))", "assertz/1")]:
        with pytest.raises(KnowledgeBaseError, match=why):
            engine.prolog(goal)
        # refused before it ran: the assertz before the refused part did not happen
        assert engine.prolog("p(X)") == [{"X": 1}], goal
    assert engine.get_names("_") == ["x"]


def test_directives_are_sandboxed_and_roll_back(engine: octopus.Engine) -> None:
    engine.add_facts("keep(0).")
    with pytest.raises(KnowledgeBaseError, match=r"line 2: not allowed in a knowledge base: "
                                                 r"halt/0 \(in halt\); nothing was loaded"):
        engine.add_facts("keep(1).\n:- halt.\nkeep(2).")
    assert engine.prolog("keep(X)") == [{"X": 0}]
    # directives that stay inside the knowledge base are fine
    assert engine.add_facts(":- use_module(library(lists)).\n:- dynamic(counter/1).\n"
                            ":- assertz(counter(0)).\n:- initialization(assertz(ready)).\n"
                            "double(X, Y) :- Y is 2 * X.") == 1
    assert engine.prolog("counter(N), ready, double(2, Y), last([1, 2], L)") == \
        [{"N": 0, "Y": 4, "L": 2}]


def test_operators_stay_in_the_knowledge_base(engine: octopus.Engine) -> None:
    engine.add_facts(":- op(700, xfx, ===>).\na ===> b.")
    assert engine.prolog("X ===> Y") == [{"X": "a", "Y": "b"}]
    with octopus.Engine() as other, pytest.raises(KnowledgeBaseError, match="syntax error"):
        other.prolog("X ===> Y")


def test_sandboxed_loading_keeps_kaluga_working(engine: octopus.Engine) -> None:
    from octopus.kaluga.drivers import knowledge_base_files
    for path in knowledge_base_files():
        engine.consult(path)
    driver = engine.prolog_once(
        "find_pci_driver(linux, pci(V, D, 0, -1, -1, 2, 0, 0), driver(Bin, _, _, _, _, _, _))",
        V=0x8086, D=0x10fb)
    assert driver == {"Bin": "ixgbe"}


def test_refusal_reasons_name_the_predicate(engine: octopus.Engine) -> None:
    with pytest.raises(KnowledgeBaseError, match="not allowed in a knowledge base: shell/2"):
        engine.prolog("shell(ls)")
    with pytest.raises(KnowledgeBaseError, match="Unknown procedure: no_such/1"):
        engine.prolog("no_such(1)")
    with pytest.raises(KnowledgeBaseError, match="may not name module user"):
        engine.prolog("user:foo")
    with pytest.raises(KnowledgeBaseError, match="computed goal"):
        engine.prolog("G = true, G")
