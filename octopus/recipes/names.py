"""Name service: register services as records, look them up, wait for them (docs/recipes.md).

A registered service is the record ``<name> { <attrs...>, registered: true }``, written
as an ephemeral record of the registering store's session: it disappears when that
session ends - a client's connection, a ``with engine.session():`` block - and, for
the engine itself, when the engine closes. The ``registered`` marker keeps services
apart from other records: ``lookup``, ``wait`` and ``services`` only ever see records
that carry it, and ``register`` refuses an attribute of that name.

- ``register(name, **attrs) -> Record`` (replaces an earlier registration of ``name``;
  attribute values are int, float, str or bool and travel as typed parameters);
- ``lookup(q, *params) -> Record``: the first service matching the query, ``NotFound``;
- ``wait(q, *params, timeout=None) -> Record``: the same, blocking until one is
  registered; ``WaitTimeout`` (a ``TimeoutError``) on timeout;
- ``unregister(name)``: ``NotFound`` if no such service;
- ``services() -> list[str]``: the names of all services, in natural order.

Failure modes: an invalid name, attribute key or value is a :class:`QueryError`;
``wait`` from a trigger handler (it would wait for its own thread) raises
:class:`~octopus.errors.LockError` unless its timeout is zero or less.
"""

from __future__ import annotations

import threading

from octopus.errors import EngineClosed, NotFound, QueryError, WaitTimeout
from octopus.events import Event, Mode, Trigger
from octopus.recipes.store import (
    Store,
    check_may_wait,
    check_name,
    deadline_after,
    discard,
    remaining,
)
from octopus.record import Record, is_name

__all__ = ["NameService"]

MARK = "registered"
_PLACEHOLDER = {bool: "%b", int: "%d", float: "%f", str: "%s"}


def _service(record: Record | None) -> bool:
    return record is not None and record.get(MARK) is True


class NameService:
    """Services registered in ``store``, through this object or any other."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, name: str, /, **attrs: object) -> Record:
        """Register (or re-register) service ``name`` with ``attrs``."""
        check_name(name, "a service name")
        fields, params = [], []
        for key, value in sorted(attrs.items()):
            placeholder = next((p for t, p in _PLACEHOLDER.items() if isinstance(value, t)),
                               None)
            if not is_name(key) or key == MARK or placeholder is None:
                raise QueryError(f"cannot register attribute {key}={value!r}: keys are record "
                                 f"names other than {MARK!r}, values int/float/str/bool")
            fields.append(f"{key}: {placeholder}")
            params.append(value)
        fields.append(f"{MARK}: true")
        return self.store.set(f"%n {{ {', '.join(fields)} }}", name, *params, ephemeral=True)

    def lookup(self, q: str, *params: object) -> Record:
        """The first registered service matching ``q``; NotFound if none."""
        for record in self.store.get_all(q, *params):
            if _service(record):
                return record
        raise NotFound(f"no service matches {q!r}")

    def wait(self, q: str, *params: object, timeout: float | None = None) -> Record:
        """Like lookup, but wait up to ``timeout`` seconds (None: forever) for a match."""
        deadline = deadline_after(timeout)
        check_may_wait(self.store, f"names.wait({q!r})", True, timeout)
        arrived: list[Record | None] = []
        ready = threading.Event()

        def on_set(event: Event) -> None:  # on the event thread: never block here
            if _service(event.record) or event.record is None:
                arrived.append(event.record)
                ready.set()

        watch = Trigger(on_set, on=Mode.ON_SET, persist=True)
        self.store.get_names(q, *params, trigger=watch)  # watch first: no gap
        try:
            try:
                return self.lookup(q, *params)
            except NotFound:
                pass
            if not ready.wait(remaining(deadline)):
                raise WaitTimeout(f"no service matching {q!r} within {timeout} s")
        finally:
            discard(self.store, watch)
        record = arrived[0]
        if record is None:  # our trigger went with a closing session
            raise EngineClosed("closed while waiting for a service")
        return record

    def unregister(self, name: str) -> None:
        """Remove service ``name``; NotFound if it is not registered."""
        check_name(name, "a service name")
        self.store.delete(f"%n {{ {MARK}: true }}", name)

    def services(self) -> list[str]:
        """The names of all registered services, in natural order."""
        return self.store.get_names(f"_ {{ {MARK}: true }}")
