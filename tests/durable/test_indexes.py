"""The ordered indexes a snapshot keeps (docs/durability.md, "Snapshots"): a restart
builds them from the snapshot's columns while the records load, the journal's replay
keeps them exact, and each equals the index built afresh from the records; a snapshot
of version 1 (no columns) still loads; columns that cannot be read cost only time; a
bit flip among them is refused like any other."""

from __future__ import annotations

import io
import json
import logging
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import octopus
from octopus import Atom, PersistenceError
from octopus.durable import tools
from octopus.durable.format import read_footer
from octopus.ordered import KeyIndex

QUERIES = ["_ { v > 10 }", "_ { v <= 3.5 }", "_ { k: x }", "_ { k >= 'm' }", "_ { up: true }",
           "_ { v: 7, k: x }"]


def snapshot(d: Path) -> Path:
    (path,) = d.glob("snapshot-*.snap")
    return path


def dump(index: KeyIndex) -> list[list[tuple[Any, str]]]:
    return [[(v, n) for vals, names in zip(run._vals, run._names, strict=True)
             for v, n in zip(vals, names, strict=True)] for run in index.runs]


def afresh(e: octopus.Engine, key: str) -> list[list[tuple[Any, str]]]:
    """The index of ``key`` built from the records now (not the engine's own)."""
    _, names, values = e._core.store._call("store_key_column", key, -1)
    return dump(KeyIndex.from_column(names, values))


def brute(e: octopus.Engine) -> dict[str, list[str]]:
    """Every query's answer from another engine holding the same records, whose
    indexes are built from them afresh."""
    with octopus.Engine() as other:
        other.set_many((r.name, dict(r.attributes)) for r in e.get_all("_"))
        return {q: other.get_names(q) for q in QUERIES}


def records(i: int) -> tuple[str, dict[str, Any]]:
    attrs: dict[str, Any] = {}
    if i % 7:
        attrs["v"] = i % 23 if i % 3 else (i % 23) + 0.5
    if i % 5:
        attrs["k"] = Atom("x") if i % 2 else f"s{i % 13}"
    if i % 4 == 0:
        attrs["up"] = i % 8 == 0
    return f"r{i}", attrs


def test_a_restart_restores_the_indexes_and_the_journal_keeps_them_exact(
        tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many(records(i) for i in range(300))
        for q in QUERIES:
            e.get_names(q)                          # the indexes of v, k and up
        e.compact()
        # The journal after the snapshot: every kind of change to indexed values.
        e.set("r1 { v: 'now a string', k: y }")     # another kind
        e.set("r2 { k: x }")                        # v gone
        e.set("r7 { v: 100 }")                      # v new
        e.set("r8 { v: 1.0, up: false }")           # equal to before as a number
        e.delete("r3")
        e.set("new { v: 11, k: x, up: true }")
        e.set("job.", sequential=True)
        e.set_many([(f"m{i}", {"v": i}) for i in range(5)] + [("r9", {"k": "zz"})])
        e.session().set("eph { v: 50 }", ephemeral=True)  # deleted as the engine opens
        e.set("r10 { v: 12 }")
        e.session().set("r10 { v: 51 }", ephemeral=True)  # a record made ephemeral
        keys = e._core.store.indexed_keys()
        answers = brute(e)
    assert sorted(keys) == ["k", "up", "v"]
    assert sorted(read_footer(snapshot(d)).index_keys) == ["k", "up", "v"]
    out = io.StringIO()
    assert tools.check(d, out) == 0
    assert "format version 2; ordered indexes kept: " in out.getvalue()
    with octopus.Engine(path=d) as e:
        store = e._core.store
        assert sorted(store.indexed_keys()) == ["k", "up", "v"]   # before any query
        for key in keys:
            assert dump(store._indexes[key]) == afresh(e, key), key
        answers["_ { v > 10 }"] = [n for n in answers["_ { v > 10 }"]
                                   if n not in ("eph", "r10")]
        assert {q: e.get_names(q) for q in QUERIES} == answers == brute(e)
        e.set("r11 { v: 99 }")                                   # and go on following
        assert e.get_names("_ { v: 99 }") == ["r11"]


def test_keys_without_an_index_are_built_by_their_first_query_after_a_restart(
        tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many(records(i) for i in range(100))
        e.get_names("_ { v > 10 }")
        e.compact()
        e.set("r1 { k: late }")
    with octopus.Engine(path=d) as e:
        assert e._core.store.indexed_keys() == ["v"]
        assert e.get_names("_ { k: late }") == ["r1"]
        assert dump(e._core.store._indexes["k"]) == afresh(e, "k")


def rewrite_footer(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a snapshot's footer (its checksum too): a file another version wrote."""
    data = path.read_bytes()
    length, _, magic = struct.unpack("<II8s", data[-16:])
    start = len(data) - 16 - length
    footer = json.loads(data[start:start + length])
    change(footer)
    raw = json.dumps(footer).encode()
    path.write_bytes(data[:start] + raw + struct.pack("<II8s", len(raw), zlib.crc32(raw),
                                                      magic))


def test_a_version_1_snapshot_still_loads(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many(records(i) for i in range(100))
        e.compact()                 # no index yet: the data section of version 1
        answers = brute(e)

    def as_version_1(footer: dict[str, Any]) -> None:
        footer["format"] = 1
        del footer["index_at"], footer["index_keys"]

    rewrite_footer(snapshot(d), as_version_1)
    assert read_footer(snapshot(d)).version == 1
    with octopus.Engine(path=d) as e:
        assert e.count() == 100
        assert {q: e.get_names(q) for q in QUERIES} == answers
        e.compact()                 # written again as version 2, with its indexes
    assert read_footer(snapshot(d)).version == 2
    assert read_footer(snapshot(d)).index_keys


def test_a_snapshot_of_an_unknown_version_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("a { v: 1 }")
        e.compact()
    rewrite_footer(snapshot(d), lambda f: f.update(format=3))
    with pytest.raises(PersistenceError, match="snapshot format version 3; this octopus "
                                               "reads versions 1, 2"):
        octopus.Engine(path=d)


def test_columns_that_cannot_be_read_cost_only_time(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many(records(i) for i in range(100))
        e.get_names("_ { v > 10 }")
        e.compact()
        answers = brute(e)
    rewrite_footer(snapshot(d), lambda f: f.update(index_at=1))   # not where they are
    with caplog.at_level(logging.WARNING, "octopus.durable"), octopus.Engine(path=d) as e:
        assert e._core.store.indexed_keys() == []
        assert {q: e.get_names(q) for q in QUERIES} == answers
    assert "the indexes it holds cannot be read" in caplog.text
    assert len(caplog.text) < 2000              # not the million values it found


def test_columns_of_another_shape_are_named_not_printed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many((f"r{i}", {"v": i}) for i in range(3000))
        e.get_names("_ { v > 10 }")
        e.compact()
    path = snapshot(d)
    footer = read_footer(path)
    # Point the columns at the names list: a well-formed term of the wrong kind.
    data = path.read_bytes()
    names_at = data.rfind(b"r", footer.index_at, data.index(b"names", footer.index_at))
    assert names_at > footer.index_at
    rewrite_footer(path, lambda f: f.update(index_at=names_at))
    with caplog.at_level(logging.WARNING, "octopus.durable"), octopus.Engine(path=d) as e:
        assert e.count() == 3000 and e.get_names("_ { v > 2997 }") == ["r2998", "r2999"]
    assert "names/1" in caplog.text and "r2999" not in caplog.text


def test_an_impossible_index_offset_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set("a { v: 1 }")
        e.get_names("_ { v: 1 }")
        e.compact()
    rewrite_footer(snapshot(d), lambda f: f.update(index_at=10**9))
    with pytest.raises(PersistenceError, match="impossible index offset"):
        octopus.Engine(path=d)


def test_a_bit_flip_among_the_columns_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "d"
    with octopus.Engine(path=d) as e:
        e.set_many(records(i) for i in range(100))
        e.get_names("_ { v > 10 }")
        e.compact()
    path = snapshot(d)
    at = read_footer(path).index_at + 40
    data = bytearray(path.read_bytes())
    data[at] ^= 4
    path.write_bytes(bytes(data))
    with pytest.raises(PersistenceError) as info:
        octopus.Engine(path=d)
    assert str(path) in str(info.value) and "offset" in str(info.value)


def test_a_directory_written_by_the_version_1_code_opens(tmp_path: Path) -> None:
    # tests/durable/data/v1: written by the code before snapshot format 2 (one rec/3
    # term per record, no columns), then one set and one delete in its journal.
    d = tmp_path / "d"
    shutil.copytree(Path(__file__).parent / "data" / "v1", d)
    assert read_footer(snapshot(d)).version == 1
    with octopus.Engine(path=d) as e:
        assert (e.revision, e.count()) == (46, 44)
        assert str(e.get("r4")) == "r4 { f: 2.0, k: 'text é', up: false, v: 4 }"
        assert e.get("big")["n"] == 123456789012345678901234567890
        assert not e.exists("r3") and e.get("after")["v"] == 1
        assert e.get_names("_ { v: 1 }") == ["after", "r1", "r6", "r11", "r16", "r21",
                                             "r26", "r31", "r36"]
        assert e.set("job.", sequential=True).name == "job.3"
        assert e.prolog("color(X)") == [{"X": "red"}]
        e.compact()
    assert read_footer(snapshot(d)).version == 2
