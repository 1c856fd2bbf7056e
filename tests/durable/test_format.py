"""The journal and snapshot formats alone (octopus/durable/format.py), no engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from octopus import Atom, PersistenceError
from octopus.durable.format import (
    ENTRY_HEAD,
    JOURNAL_HEADER,
    decode_rows,
    encode_attrs,
    encode_rows,
    entry,
    journal_header,
    scan_journal,
    set_entry,
)

names = st.from_regex(r"[a-z][A-Za-z0-9._\-]{0,12}", fullmatch=True).filter(
    lambda s: s not in ("true", "false"))
values = st.one_of(
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    names.map(Atom),
    st.booleans(),
)


@given(names, st.dictionaries(names, values, max_size=6), st.integers(0, 2**63),
       st.sampled_from([0, 1]), st.none() | st.tuples(names, st.integers(0, 10**9)))
def test_the_fast_set_entry_is_the_json_entry(name: str, attrs: dict[str, object],
                                              revision: int, flags: int,
                                              counter: tuple[str, int] | None) -> None:
    fast = set_entry(revision, name, attrs, flags, counter)   # type: ignore[arg-type]
    slow = entry(["s", revision, name, encode_attrs(attrs), flags,  # type: ignore[arg-type]
                  None if counter is None else list(counter)])
    assert fast == slow


def test_integers_read_back_whatever_the_digit_limit(tmp_path: Path) -> None:
    big = 10**4000 + 7
    path = tmp_path / "journal-00000001.log"
    path.write_bytes(journal_header(1) + set_entry(1, "a", {"v": big}, 0, None))
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        (_, payload), = scan_journal(path).entries
    finally:
        sys.set_int_max_str_digits(old)
    assert payload[3]["v"] == big


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.tuples(inner, inner)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                    max_leaves=10))
def test_knowledge_base_rows_keep_tuples_lists_and_dicts_apart(value: object) -> None:
    assert decode_rows(json.loads(json.dumps(encode_rows(value)))) == value


def journal(tmp_path: Path, n: int) -> tuple[Path, list[int]]:
    path = tmp_path / "journal-00000001.log"
    data = journal_header(1)
    offsets = []
    for i in range(n):
        offsets.append(len(data))
        data += set_entry(i + 1, f"r{i}", {"v": i}, 0, None)
    path.write_bytes(data)
    return path, offsets


def test_a_whole_journal_scans_clean(tmp_path: Path) -> None:
    path, offsets = journal(tmp_path, 5)
    scan = scan_journal(path)
    assert [o for o, _ in scan.entries] == offsets
    assert scan.bad_offset is None and scan.end == path.stat().st_size
    assert scan.entries[2][1] == ["s", 3, "r2", {"v": 2}, 0, None]


@pytest.mark.parametrize("keep", [1, ENTRY_HEAD, ENTRY_HEAD + 5])
def test_a_cut_last_entry_is_torn(tmp_path: Path, keep: int) -> None:
    path, offsets = journal(tmp_path, 3)
    path.write_bytes(path.read_bytes()[:offsets[-1] + keep])
    scan = scan_journal(path)
    assert scan.bad_offset == offsets[-1] and scan.torn and len(scan.entries) == 2
    assert scan.end == offsets[-1]


def test_a_flipped_bit_with_entries_after_it_is_corruption(tmp_path: Path) -> None:
    path, offsets = journal(tmp_path, 4)
    data = bytearray(path.read_bytes())
    data[offsets[1] + ENTRY_HEAD + 2] ^= 4
    path.write_bytes(bytes(data))
    scan = scan_journal(path)
    assert scan.bad_offset == offsets[1] and not scan.torn and scan.valid_after == 2
    assert f"offset {offsets[1]}" in scan.problem()


def test_a_flipped_bit_in_the_last_entry_is_a_torn_tail(tmp_path: Path) -> None:
    path, offsets = journal(tmp_path, 3)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    scan = scan_journal(path)
    assert scan.bad_offset == offsets[-1] and scan.torn


def test_headers_are_checked(tmp_path: Path) -> None:
    path, _ = journal(tmp_path, 1)
    data = path.read_bytes()
    path.write_bytes(data[:JOURNAL_HEADER - 1])
    with pytest.raises(PersistenceError, match="header"):
        scan_journal(path)
    path.write_bytes(b"X" + data[1:])
    with pytest.raises(PersistenceError, match="not an octopus journal"):
        scan_journal(path)
