"""``octopus.read``: pull typed values out of a record with a format.

    read(record, "%s { iref: %d }")  ->  ("serial", 42)

The format is written in the record language: its name is ``%s`` (read the record's
name) or ``_`` (ignore it); each attribute is ``key: %d|%f|%s|%b``. Values come back in
the order their placeholders appear. ``%s`` reads strings and identifiers, ``%f`` reads
floats and (widened) integers; any other type mismatch is a ParameterError and a missing
attribute is NotFound.
"""

from __future__ import annotations

from octopus.errors import NotFound, ParameterError, QueryError
from octopus.query.ast import AnyName, Placeholder
from octopus.query.compile import compile_record
from octopus.query.parser import parse
from octopus.record import Record, Value

__all__ = ["read"]


def _convert(kind: str, key: str, value: Value) -> Value:
    if kind == "d" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "f" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "s" and isinstance(value, str):
        return str(value)
    if kind == "b" and isinstance(value, bool):
        return value
    raise ParameterError(f"attribute {key!r} is {value!r}, which %{kind} cannot read")


def read(record: Record | str, fmt: str) -> tuple[Value, ...]:
    """Extract the values ``fmt`` asks for from ``record`` (a Record or record text)."""
    if isinstance(record, str):
        cr = compile_record(record)
        if cr.conditions:
            raise QueryError("read() takes a record, not a query with conditions")
        record = Record._trusted(cr.name, cr.attributes, 0)
    elif not isinstance(record, Record):
        raise QueryError(f"read() takes a Record or record text, got {type(record).__name__}")
    query = parse(fmt)
    found: dict[int, Value] = {}
    if isinstance(query.name, Placeholder):
        if query.name.kind != "s":
            raise QueryError("the name of a read format is %s or _")
        found[query.name.index] = record.name
    elif not isinstance(query.name, AnyName):
        raise QueryError("the name of a read format is %s or _")
    for c in query.constraints:
        if c.op != "is" or not isinstance(c.value, Placeholder) or c.value.kind == "n":
            raise QueryError(f"read format items are 'key: %d|%f|%s|%b', not '{c}'")
        if c.key not in record:
            raise NotFound(f"record {record.name} has no attribute {c.key!r}")
        found[c.value.index] = _convert(c.value.kind, c.key, record[c.key])
    return tuple(found[i] for i in sorted(found))
