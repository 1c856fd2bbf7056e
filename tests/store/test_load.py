"""Bulk loading of record texts (``Engine.load``, octopus/bulk.py): a dump loads back
into the same store, every record is one change of the change stream (triggers,
observers, the journal), each batch is all or nothing, and a bad line is a typed error
naming it (docs/language.md, "Records in bulk")."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import octopus
from octopus import Atom, Mode, ParseError, QueryError, bulk
from octopus.bulk import Batch, chunks, read_records
from octopus.core import ChangeOp
from octopus.durable import tools


def same_store(a: octopus.Engine, b: octopus.Engine) -> None:
    """Equal records, value for value and type for type (1 is not 1.0 nor True)."""
    ra = {r.name: r for r in a.get_all("_")}
    rb = {r.name: r for r in b.get_all("_")}
    assert ra.keys() == rb.keys()
    for name, r in ra.items():
        assert str(r) == str(rb[name])
        assert [type(v) for v in r.attributes.values()] == \
            [type(v) for v in rb[name].attributes.values()]


KEYS = st.from_regex(r"[a-z][a-z0-9._\-]{0,8}", fullmatch=True).filter(
    lambda k: k not in ("true", "false"))
VALUES = st.one_of(
    st.integers(-(10**30), 10**30), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=12),       # quotes, newlines, \r
    st.sampled_from(["", "'", "\\", "a\nb", "it's\n", "\r\n", "x\\'\n'y"]),
    KEYS.map(Atom), st.booleans())
RECORDS = st.lists(st.tuples(KEYS, st.dictionaries(KEYS, VALUES, max_size=6)), max_size=30)


@settings(max_examples=150, deadline=None)
@given(RECORDS, st.integers(1, 7))
def test_a_dump_loads_back_into_the_same_store(records: list[tuple[str, dict]],
                                              batch: int) -> None:
    with octopus.Engine() as a, octopus.Engine() as b:
        a.set_many(records, batch=50)
        text = "".join(f"{r}\n" for r in a.get_all("_"))
        assert b.load(io.StringIO(text), batch=batch) == a.count()
        same_store(a, b)


def test_a_file_round_trip_through_octopus_data_dump(tmp_path: Path) -> None:
    records = [(f"hw.pci.device.{i}", {"vendor": 0x8086, "device_id": i, "class": "C",
                                       "bus": i % 256, "label": f"dev {i}\nline 2"})
               for i in range(3000)]
    records.append(("odd", {"s": "it's", "t": "a\\b", "f": -0.0, "x": Atom("eth0"),
                            "b": False, "big": -(10**40)}))
    with octopus.Engine(path=tmp_path / "d") as durable:
        durable.set_many(records, batch=1000)
        durable.set("gone { a: 1 }")
        durable.delete("gone")
    dump = io.StringIO()
    assert tools.dump(tmp_path / "d", dump) == len(records)
    (tmp_path / "dump.txt").write_text(dump.getvalue(), encoding="utf-8")
    with octopus.Engine() as a, octopus.Engine() as b:
        a.set_many(records)
        assert b.load(tmp_path / "dump.txt", batch=999) == len(records)
        same_store(a, b)
        assert str(b.load(str(tmp_path / "dump.txt"))) == str(len(records))  # a str path
        same_store(a, b)


def test_a_bad_line_stops_the_load_and_leaves_its_batch_out() -> None:
    lines = [f"r{i} {{ v: {i} }}" for i in range(10)]
    lines[7] = "r7 { v: 007 }"                  # leading zeros: a ParseError
    with octopus.Engine() as e:
        with pytest.raises(ParseError) as info:
            e.load(lines, batch=3)
        assert info.value.line == 8 and info.value.column == 9
        assert "line 8" in str(info.value)
        assert info.value.loaded == 6           # batches r0-r2, r3-r5; not r6-r8
        assert sorted(e.get_names("_")) == [f"r{i}" for i in range(6)]
        assert e.revision == 6


@pytest.mark.parametrize(("text", "message"), [
    ("x { a: 1, a: 2 }", "two values"),
    ("x { a: 1, b > 2 }", "cannot have conditions"),
    ("x { a: %d }", "placeholder"),
    ("_ { a: 1 }", "plain record name"),
    ("x { a: _ }", "not a value"),
])
def test_records_the_store_cannot_take_are_query_errors_naming_the_line(
        text: str, message: str) -> None:
    with octopus.Engine() as e:
        with pytest.raises(QueryError, match=message) as info:
            e.load(["ok { a: 1 }", "", text])
        assert info.value.line == 3 and str(info.value).startswith("line 3: ")
        assert info.value.loaded == 0 and e.count() == 0


def test_a_record_may_go_on_over_lines_inside_a_string() -> None:
    lines = ["a { s: 'one", "two', t: 'x' }", "b { u: 'it\\'s", "', v: 1 }", "c { w: 'open"]
    with octopus.Engine() as e:
        with pytest.raises(ParseError, match="unterminated string") as info:
            e.load(lines, batch=1)
        assert info.value.line == 5
        assert e.get("a")["s"] == "one\ntwo" and e.get("b")["u"] == "it's\n"


def test_an_open_quote_is_not_followed_past_the_length_limit() -> None:
    lines = ["a { s: 'never closed }"] + ["filler { x: 1 }"] * 100
    with octopus.Engine(max_query_length=500) as e:
        with pytest.raises(ParseError, match="unterminated string") as info:
            e.load(lines)
        assert info.value.line == 1 and e.count() == 0
    # The reader never joins more than max_length characters into one record.
    texts = [t for _, t, _ in read_records(iter(lines), 500)]
    assert max(map(len, texts)) <= 500


def test_file_limits_and_encoding_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"a { x: 1 }\nb { x: 2 }\nc { s: '\xff' }\n")
    with octopus.Engine() as e:
        with pytest.raises(QueryError, match="UTF-8") as info:
            e.load(path)
        assert info.value.line == 3 and e.count() == 0
        path.write_bytes(b"a { x: 1 }\n" + b"b { s: '" + b"y" * 300_000 + b"' }\n")
        with pytest.raises(QueryError, match="longer than") as info:
            e.load(path)
        assert info.value.line == 2 and e.count() == 0
        path.write_bytes(b"a { x: 1 }\n" + b"y" * (3 << 20))     # no line end at all
        with pytest.raises(QueryError, match="longer than") as info:
            e.load(path)
        assert info.value.line == 2
        with pytest.raises(QueryError, match="not bytes"):
            e.load(b"a { x: 1 }")                               # type: ignore[arg-type]
        with pytest.raises(QueryError, match="batch"):
            e.load(["a {}"], batch=0)


def test_replacing_records_and_a_name_twice_in_a_batch() -> None:
    with octopus.Engine() as e:
        e.set("a { old: 1, v: 0 }")
        e.get_names("_ { v > -1 }")             # the ordered index of v exists
        assert e.load(["a { v: 1 }", "b { v: 2 }", "a { v: 3 }"]) == 3
        assert str(e.get("a")) == "a { v: 3 }" and e.get("a").revision == 4
        assert e.get("b").revision == 3 and e.count() == 2
        assert e.get_names("_ { v > 0 }") == ["a", "b"]
        assert e.get_names("_ { v: 1 }") == [] and e.get_names("_ { old: _ }") == []


def test_indexes_follow_a_load_of_several_shapes_and_kinds() -> None:
    """The ordered indexes follow a bulk batch read off its flat form: new records of
    several shapes, replaced ones, identifiers (stored as [text]) and strings."""
    lines = [f"n{i} {{ k: {i % 7}, t: {'x' if i % 2 else 'y'}.{i % 3} }}" for i in range(60)]
    lines += [f"m{i} {{ k: 'k{i % 5}', u: true }}" for i in range(20)]
    lines += [f"n{i} {{ k: {100 + i} }}" for i in range(0, 60, 6)]   # replaced, one key left
    with octopus.Engine() as e, octopus.Engine() as plain:
        e.set("n0 { k: -1, t: z }")
        e.get_names("_ { k > -5 }")
        e.get_names("_ { t >= a }")
        assert e.load(lines, batch=7) == len(lines)
        plain.set("n0 { k: -1, t: z }")
        for line in lines:
            plain.set(line)
        same_store(e, plain)
        for q in ["_ { k > 3 }", "_ { k <= 2 }", "_ { k >= 'k2' }", "_ { t > x.0 }",
                  "_ { t < y }", "_ { k: 'k1' }", "_ { t: y.2 }", "_ { k > 99 }"]:
            assert sorted(e.get_names(q)) == sorted(plain.get_names(q)), q


def test_every_loaded_record_is_one_change_in_revision_order() -> None:
    seen: list[tuple[int, str, str]] = []
    events: list[octopus.Event] = []
    done = threading.Event()
    with octopus.Engine() as e:
        e.set("before { v: 0 }")
        e.observe(lambda c: seen.append((c.revision, c.op.value, str(c.record))))

        def handler(ev: octopus.Event) -> None:
            events.append(ev)
            if len(events) == 5:
                done.set()

        e.watch("_ { v: _ }", handler, on=Mode.ON_SET)
        assert e.load([f"r{i} {{ v: {i}, w: x.{i} }}" for i in range(5)], batch=2) == 5
        assert done.wait(10)
        assert seen == [(2 + i, ChangeOp.SET.value, f"r{i} {{ v: {i}, w: x.{i} }}")
                        for i in range(5)]
        assert [(ev.revision, ev.record.name, type(ev.record["w"])) for ev in events] == \
            [(2 + i, f"r{i}", Atom) for i in range(5)]


def test_an_ephemeral_record_loaded_over_belongs_to_nobody() -> None:
    with octopus.Engine() as e:
        s = e.session()
        s.set("lock { a: 1 }", ephemeral=True)
        e.load(["lock { a: 2 }"])
        s.close()
        assert e.get("lock")["a"] == 2


def test_a_durable_engine_recovers_what_it_loaded(tmp_path: Path) -> None:
    lines = [f"d{i} {{ n: {i}, s: 'x\ny', a: eth{i} }}" for i in range(2500)]
    with octopus.Engine(path=tmp_path / "d", fsync="always") as e:
        assert e.load(lines, batch=1000) == 2500
        with pytest.raises(ParseError):
            e.load(["late { n: 1 }", "bad {"])
        revision = e.revision
        before = [str(r) for r in e.get_all("_")]
    with octopus.Engine(path=tmp_path / "d") as e:
        assert e.revision == revision == 2500
        assert [str(r) for r in e.get_all("_")] == before
        assert e.get("d7")["a"] == Atom("eth7")
        assert e.get_names("_ { n > 2497 }") == ["d2498", "d2499"]


def test_an_invariant_refuses_a_whole_batch(tmp_path: Path) -> None:
    rules = "violation(big(D)) :- attr(D, n, N), N > 10.\n"
    for path in (None, tmp_path / "d"):
        with octopus.Engine(path=path) as e:
            e.invariant("small", rules)
            with pytest.raises(octopus.InvariantViolated) as info:
                e.load([f"r{i} {{ n: {i * 4} }}" for i in range(6)], batch=2)
            assert info.value.loaded == 2
            assert sorted(e.get_names("_")) == ["r0", "r1"] and e.revision == 2


def test_chunks_end_where_a_record_may_start() -> None:
    text = (b"a { s: 'x' }\n" * 5 + b"b { s: 'one\ntwo\nthree' }\n" + b"c { s: 'it\\'s' }\n") * 40
    for size in (40, 64, 100, 333):
        pieces = list(chunks([text[i:i + 7] for i in range(0, len(text), 7)], size))
        assert b"".join(p for _, p in pieces) == text
        line = 1
        for first, piece in pieces:
            assert first == line and piece.endswith(b"\n") and len(piece) <= size
            assert not piece.startswith((b"two", b"three"))
            line += piece.count(b"\n")
    with pytest.raises(QueryError, match="line 2: longer") as info:
        list(chunks([b"a {}\n" + b"x" * 100], 50))
    assert info.value.line == 2
    # At most 3 lines a piece, unless a record goes on over the cut.
    pieces = [p for _, p in chunks([text], 10_000, 3)]
    assert b"".join(pieces) == text
    assert all(p.count(b"\n") <= 3 or b"one\ntwo" in p for p in pieces)
    assert not any(p.startswith((b"two", b"three")) for p in pieces)
    assert [p for _, p in chunks([b"a {}\nb {}"], 100, 1)] == [b"a {}\n", b"b {}"]


def test_a_load_over_stored_records_replaces_them_and_counts_only_new_ones() -> None:
    """The store's loop for a batch of distinct names (no index, no rules) replaces a
    stored record of the same name and counts only the new ones."""
    with octopus.Engine() as e:
        e.set("a { v: 0 }")
        e.set("c { v: 0 }")
        assert e.load(["a { v: 1 }", "b { v: 2 }", "c { w: 'x' }"]) == 3
        assert e.count() == 3 == e._core.store.recount()
        assert str(e.get("a")) == "a { v: 1 }" and e.get("a").revision == 3
        assert str(e.get("c")) == "c { w: 'x' }" and e.get("c").revision == 5
        assert e.get_names("_ { v: _ }") == ["a", "b"]


def test_a_bad_batch_changes_nothing_even_after_records_of_it_were_stored() -> None:
    """A batch the store finds bad part way through (the flat list does not fit its
    shapes) is undone whole: the records before the bad one are not kept."""
    with octopus.Engine() as e:
        e.set("a { v: 0 }")
        store = e._core.store
        shapes = [["v"]]
        flat = [1, "a", 1, 1, "b", 2, 1, "c", 3, 2, "d", 4]    # shape 2 does not exist
        with pytest.raises(octopus.OctopusError):
            store.bulk(shapes, flat, True, e.revision)
        assert store.recount() == 1 and str(e.get("a")) == "a { v: 0 }"
        assert not e.exists("b") and not e.exists("c")
        flat = [1, "b", 1, 1, "c"]                               # cut short
        with pytest.raises(octopus.OctopusError):
            store.bulk(shapes, flat, True, e.revision)
        assert store.recount() == 1 and not e.exists("b")


def one_by_one(lines: list[str], size: int, max_length: int) -> list[Batch]:
    """batches() as it was before it read blocks of lines: every record read alone."""
    out = []
    batch = Batch()
    for record in read_records(lines, max_length):
        bulk._add(batch, record, max_length)
        if len(batch) >= size:
            out.append(batch)
            batch = Batch()
    if len(batch):
        out.append(batch)
    return out


def outcome(read: Callable[[], list[Batch]]) -> object:
    try:
        return [(b.shapes, b.flat, b.names, b.distinct) for b in read()]
    except QueryError as e:
        return type(e), str(e), getattr(e, "line", None)


SHAPED = st.builds(lambda i, s: f"d.{i} {{ bus: {i}, s: '{s}', v: x{i} }}",
                   st.integers(0, 50), st.sampled_from(["", "a b", "é", "it\\'s", "q\\n"]))
ODD_LINES = st.sampled_from([
    "", "  ", "e { s: 'open", "still open' }", "e { v: 007 }", "e { a: 1, a: 2 }", "e {}",
    "d.1 { bus: 1, s: '', v: x }\r", "d.2 { bus: 2, s: '', v: x }\n", "d.3{bus:3,s:'',v:x}",
    "d.4 { bus: 4, s: '', v: true }", "d.5 { bus: 5, s: '', v: 1.5 }", "f { b: 1 }"])
# Runs of records of one shape (what blocks are made of) between odd lines.
LINES = st.lists(st.one_of(st.lists(SHAPED, min_size=1, max_size=12),
                           st.lists(st.builds(lambda i: f"d.{i} {{ bus: {i} }}",
                                              st.integers(0, 50)), min_size=1, max_size=5),
                           st.lists(ODD_LINES, max_size=2)),
                 max_size=8).map(lambda runs: [line for run in runs for line in run])


@settings(max_examples=200, deadline=None)
@given(LINES, st.integers(1, 25), st.sampled_from([40, 65536]))
def test_batches_read_in_blocks_are_the_records_read_one_by_one(
        lines: list[str], size: int, max_length: int) -> None:
    with mock.patch.object(bulk, "_BLOCK", 5):
        assert outcome(lambda: list(bulk.batches(iter(lines), size, max_length))) == \
            outcome(lambda: one_by_one(lines, size, max_length))


def test_batches_read_in_blocks_report_the_first_bad_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "_BLOCK", 4)
    good = [f"d.{i} {{ v: {i} }}" for i in range(20)]
    blocks = list(bulk.batches(iter(good), 7, 65536))
    assert [len(b) for b in blocks] == [7, 7, 6]
    assert outcome(lambda: blocks) == outcome(lambda: one_by_one(good, 7, 65536))

    def failing() -> Iterator[str]:
        yield from good[:9]
        yield "d.9 { v: 09 }"                           # line 10: a ParseError
        yield good[10]
        raise QueryError("line 12: the text is not valid UTF-8")

    with pytest.raises(ParseError) as info:
        list(bulk.batches(failing(), 100, 65536))
    assert info.value.line == 10

    def failing_later() -> Iterator[str]:
        yield from good[:10]
        raise QueryError("line 11: the text is not valid UTF-8")

    got = []
    with pytest.raises(QueryError, match="line 11"):
        for b in bulk.batches(failing_later(), 3, 65536):
            got.append(len(b))
    assert got == [3, 3, 3]


def test_a_load_lowers_the_switch_interval_while_it_runs_and_restores_it() -> None:
    import sys
    before = sys.getswitchinterval()
    seen: list[float] = []
    lines = [f"r{i} {{ v: {i} }}" for i in range(50)]
    with octopus.Engine() as e:
        e.load(lines, batch=10, progress=lambda n: seen.append(sys.getswitchinterval()))
        assert seen and max(seen) <= 0.0005 + 1e-9
        assert sys.getswitchinterval() == before
        # Loads overlapping in two threads: restored when the last one ends.
        inside = threading.Event()
        release = threading.Event()

        def slow(n: int) -> None:
            inside.set()
            release.wait(10)

        other = threading.Thread(target=lambda: e.load(lines, batch=10, progress=slow))
        other.start()
        assert inside.wait(10)
        e.load(lines, batch=10)
        assert sys.getswitchinterval() <= 0.0005 + 1e-9      # the other load still runs
        release.set()
        other.join(10)
        assert sys.getswitchinterval() == before
        # A change made by someone else while a load ran is theirs to keep.
        try:
            e.load(lines, batch=10, progress=lambda n: sys.setswitchinterval(0.002))
            assert sys.getswitchinterval() == 0.002
        finally:
            sys.setswitchinterval(before)
