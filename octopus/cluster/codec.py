"""How a cluster lays out its state in etcd: the keys under the prefix, and records as
etcd values.

Keys (``P`` is the prefix, ``/octopus/`` by default)::

    P r/<name>          a record; its mod_revision is the record's revision, its lease
                        (if any) the session whose ephemeral record it is
    P s/<base>          the counter of sequential names of <base>: the next number
    P m/<node>.<n>      a published message, under a short-lived lease (never stored
                        beyond it)
    P l/<lease, hex>    a resumable session: sha256 of its resume secret, on its lease
    P x/w/<node>        marks the revision of a change that installs a trigger
    P x/s/<node>        written by sync(): its revision is a point every node reaches

Values are compact JSON: ``{"a": {key: value, ...}}`` with identifiers as one-element
lists (``{"a": {"vendor": 32902, "class": ["C"]}}``), the same shapes the Prolog adapter
passes (octopus/adapter.py), so strings and identifiers stay apart, and ints, floats
(``1.0`` stays a float) and booleans keep their types. ``"w"`` carries a trigger marker,
``"n"`` a message's name. A value that does not decode into valid attributes is refused
by :func:`decode_value` with a ValueError, never half-read.
"""

from __future__ import annotations

import json
from typing import Any

from octopus.errors import QueryError
from octopus.record import Atom, Value, check_value, is_name

__all__ = ["decode_value", "encode_value"]


def encode_value(attrs: dict[str, Value], *, marker: str | None = None,
                 name: str | None = None) -> bytes:
    """A record's attributes (already validated) as an etcd value."""
    doc: dict[str, Any] = {"a": {k: ([str.__str__(v)] if type(v) is Atom else v)
                                 for k, v in attrs.items()}}
    if marker is not None:
        doc["w"] = marker
    if name is not None:
        doc["n"] = name
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def decode_value(data: bytes) -> tuple[dict[str, Value], str | None, str | None]:
    """(attributes sorted by key, marker, name) from an etcd value; ValueError if the
    value is not one this module wrote."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("a"), dict):
        raise ValueError("not an Octopus record value")
    attrs: dict[str, Value] = {}
    for key in sorted(doc["a"]):
        raw = doc["a"][key]
        if not is_name(key):
            raise ValueError(f"invalid attribute key {key[:60]!r}")
        if type(raw) is list:
            if len(raw) != 1 or type(raw[0]) is not str or not is_name(raw[0]):
                raise ValueError(f"invalid identifier for {key}")
            value: Value = Atom(raw[0])
        elif type(raw) in (int, float, str, bool):
            value = raw
        else:
            raise ValueError(f"invalid value for {key}")
        try:
            check_value(value)
        except QueryError as e:
            raise ValueError(str(e)) from None
        attrs[key] = value
    marker = doc.get("w")
    name = doc.get("n")
    if marker is not None and type(marker) is not str:
        raise ValueError("invalid marker")
    if name is not None and (type(name) is not str or not is_name(name)):
        raise ValueError("invalid message name")
    return attrs, marker, name
