"""docs/language.md §Queries, one line per rule: which stored records a query matches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import octopus

RECORDS = [
    "obj1 { a: 1, s: 'abc', t: abc, b: true, f: 1.5 }",
    "obj2 { a: 2, s: 'abd', t: xyz, b: false, f: 2.0 }",
    "obj10 { a: 10, s: 'B', n: 0 }",
    "objb { a: 1.0, s: 'abc' }",
    "hw.pci.device.1 { bus: 0, device: 1, vendor: 0x8086, device_id: 0x107d, class: 'C' }",
    "hw.pci.device.2 { bus: 0, device: 2, vendor: 0x1af4, device_id: 0x1000, class: 'X' }",
    "hw.pci.device.10 { bus: 1, device: 0, vendor: 0x8086, device_id: 0x10fb, class: 'Y' }",
    "big { v: 123456789012345678901234567890 }",
    "text { u: 'ünï', empty: '', q: 'it\\'s' }",
    "bare",
]

CASES = [
    # name patterns
    ("obj1", ["obj1"]),
    ("nothing", []),
    ("_", ["bare", "big", "hw.pci.device.1", "hw.pci.device.2", "hw.pci.device.10",
           "obj1", "obj2", "obj10", "objb", "text"]),
    ("r'^obj'", ["obj1", "obj2", "obj10", "objb"]),
    ("r'obj1'", ["obj1", "obj10"]),                    # search, not full match
    ("r'^obj1$'", ["obj1"]),
    ("r'^hw\\.pci\\..*'", ["hw.pci.device.1", "hw.pci.device.2", "hw.pci.device.10"]),
    ("r'^HW'", []),
    # equality: numbers numerically, atom equals string, booleans only booleans
    ("_ { a: 1 }", ["obj1", "objb"]),
    ("_ { a: 1.0 }", ["obj1", "objb"]),
    ("_ { a == 1 }", ["obj1", "objb"]),
    ("_ { f: 2 }", ["obj2"]),
    ("_ { s: 'abc' }", ["obj1", "objb"]),
    ("_ { s: abc }", ["obj1", "objb"]),
    ("_ { t: 'abc' }", ["obj1"]),
    ("_ { t: abc }", ["obj1"]),
    ("_ { t == 'xyz' }", ["obj2"]),
    ("_ { b: true }", ["obj1"]),
    ("_ { b: false }", ["obj2"]),
    ("_ { a: true }", []),
    ("_ { b: 1 }", []),
    ("_ { b: 'true' }", []),
    ("_ { n: false }", []),
    ("_ { v: 123456789012345678901234567890 }", ["big"]),
    ("_ { v > 123456789012345678901234567889 }", ["big"]),
    ("_ { u: 'ünï' }", ["text"]),
    ("_ { empty: '' }", ["text"]),
    ("_ { q: 'it\\'s' }", ["text"]),
    # presence and missing keys
    ("_ { a: _ }", ["obj1", "obj2", "obj10", "objb"]),
    ("_ { n: _ }", ["obj10"]),
    ("_ { zzz: _ }", []),
    ("_ { zzz != 1 }", []),                            # missing key: no match, also for !=
    # inequality needs the same kind
    ("_ { a != 1 }", ["obj2", "obj10"]),
    ("_ { s != 'abc' }", ["obj2", "obj10"]),
    ("_ { a != 'x' }", []),                            # type mismatch is no match
    ("_ { b != true }", ["obj2"]),
    # ordering: numbers numerically, strings by byte order
    ("_ { a > 1 }", ["obj2", "obj10"]),
    ("_ { a >= 1 }", ["obj1", "obj2", "obj10", "objb"]),
    ("_ { a < 2 }", ["obj1", "objb"]),
    ("_ { a <= 2.0 }", ["obj1", "obj2", "objb"]),
    ("_ { a > 2, a < 11 }", ["obj10"]),               # constraints on one key combine
    ("_ { a > 1.5 }", ["obj2", "obj10"]),
    ("_ { s < 'abd' }", [*["obj10", "obj1", "objb"][0:0], "obj1", "obj10", "objb"]),
    ("_ { s > 'abc' }", ["obj2"]),
    ("_ { s < 'a' }", ["obj10"]),                      # 'B' < 'a' in byte order
    ("_ { a < 'z' }", []),                             # number vs string: no match
    ("_ { s > 5 }", []),
    ("_ { t >= abc }", ["obj1", "obj2"]),
    # regex on values: strings and atoms, never numbers
    ("_ { class: r'C|X|T' }", ["hw.pci.device.1", "hw.pci.device.2"]),
    ("_ { t: r'^x' }", ["obj2"]),
    ("_ { a: r'1' }", []),
    ("_ { u: r'^ü.ï$' }", ["text"]),
    # combinations
    ("_ { vendor: 0x8086 }", ["hw.pci.device.1", "hw.pci.device.10"]),
    ("_ { vendor: 32902, device_id: 4221 }", ["hw.pci.device.1"]),
    ("r'^hw' { bus: 0, device <= 1, vendor > 100, class: r'C|X|T' }", ["hw.pci.device.1"]),
    ("hw.pci.device.2 { vendor: 0x1af4 }", ["hw.pci.device.2"]),
    ("hw.pci.device.2 { vendor: 0x8086 }", []),
    ("bare { a: _ }", []),
    ("bare {}", ["bare"]),
]


@pytest.fixture(scope="module")
def store() -> Iterator[octopus.Engine]:
    with octopus.Engine() as e:
        for r in RECORDS:
            e.set(r)
        yield e


@pytest.mark.parametrize(("query", "names"), CASES)
def test_query_matches(store: octopus.Engine, query: str, names: list[str]) -> None:
    assert store.get_names(query) == names
    assert [r.name for r in store.get_all(query)] == names
    assert store.exists(query) == bool(names)
    if names:
        assert store.get(query).name == names[0]
    else:
        with pytest.raises(octopus.NotFound):
            store.get(query)


@pytest.mark.parametrize("query", [
    "_ { a: r'(' }",
    "_ { a: r'[z-a]' }",
    "r'(?<' ",
    "_ { a: r'(*LIMIT_MATCH=99999999)x' }",
    "_ { b < true }",
    "_ { b >= false }",
])
def test_invalid_query_is_a_query_error_even_with_no_candidates(
        store: octopus.Engine, query: str) -> None:
    with pytest.raises(octopus.QueryError):
        store.get_names(query)


def test_catastrophic_regex_fails_with_an_error_not_a_hang() -> None:
    with octopus.Engine() as e:
        e.set("victim { s: %s }", "a" * 40 + "b")
        with pytest.raises(octopus.QueryError, match="limit"):
            e.get("_ { s: r'^(a+)+$' }")
        assert e.get("victim")["s"] == "a" * 40 + "b"


def test_natural_order() -> None:
    with octopus.Engine() as e:
        for n in ["obj10", "objb", "obj2", "a01", "a1", "a", "b2c10", "b2c9", "x.1.10", "x.1.9"]:
            e.set(n)
        expected = ["a", "a01", "a1", "b2c9", "b2c10", "obj2", "obj10", "objb", "x.1.9", "x.1.10"]
        assert e.get_names("_") == expected
        assert e.get("_").name == "a"
        assert e.get("r'^obj'").name == "obj2"
        assert sorted(expected, key=octopus.record.natural_key) == expected
