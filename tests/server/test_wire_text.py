"""A record's text as the server sends it (octopus.server.wire.record_text, made without
a call per value) is ``str(record).encode()`` for every record."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from octopus.record import Atom, Record
from octopus.server.wire import record_text

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z0-9_]{1,4}){0,2}", fullmatch=True).filter(
    lambda n: n not in ("true", "false"))
KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in ("true", "false"))
VALUES = st.one_of(st.integers(-(10**80), 10**80), st.integers(-(10**19), 10**19),
                   st.floats(allow_nan=False, allow_infinity=False),
                   st.text(st.characters(codec="utf-8"), max_size=10),
                   st.text("ab'\\ ", max_size=6), KEYS.map(Atom), st.booleans())
records = st.builds(Record, NAMES, st.dictionaries(KEYS, VALUES, max_size=6))


@settings(max_examples=500)
@given(records)
@example(Record("x", {}))
@example(Record("x", {"a": "it's", "b": "back\\slash", "c": "", "d": "é😀"}))
@example(Record("x", {"a": 10**18 - 1, "b": 10**18, "c": -(10**18) + 1, "d": -(10**18),
                      "e": 10**80, "f": True, "g": False, "h": 0, "i": -0.0, "j": 1e300}))
@example(Record("x", {"a": Atom("it"), "b": Atom("true_ish")}))
def test_record_text_is_the_records_canonical_text(record: Record) -> None:
    assert record_text(record) == str(record).encode()


def test_record_text_under_a_lowered_digit_limit() -> None:
    import sys
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        r = Record("x", {"big": 10**700, "small": 10**17})
        assert record_text(r) == str(r).encode()
    finally:
        sys.set_int_max_str_digits(old)
