"""The barrier and name service that Kaluga and the boot demo use — in one place.

SPEC section 6 defines ``session.barrier(name, n)`` (a double barrier: ``enter()``,
``leave()``) and ``session.names`` (``register``, ``lookup``, ``wait``, ``unregister``).
Those recipes are built on another branch. Until they land, :func:`coordination`
returns :class:`Primitives`, which offers the same API built only on the engine's
public primitives (sequential records, triggers, ``wait_for``). When the recipes are
merged, switching is the one-line change marked below; nothing else in
``octopus.kaluga`` touches barriers or names directly.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Protocol

from octopus.engine import Session
from octopus.errors import NotFound, QueryError, TriggerNotFound
from octopus.events import Mode, Trigger
from octopus.record import Record

__all__ = ["Barrier", "Coordination", "Names", "Primitives", "coordination", "record_text"]

_KEY = re.compile(r"[a-z][A-Za-z0-9._-]*\Z")


class Barrier(Protocol):
    def enter(self, timeout: float | None = None) -> None: ...
    def leave(self, timeout: float | None = None) -> None: ...


class Names(Protocol):
    def register(self, name: str, **attrs: Any) -> Record: ...
    def lookup(self, q: str) -> Record: ...
    def wait(self, q: str, timeout: float | None = None) -> Record: ...
    def unregister(self, name: str) -> None: ...


class Coordination(Protocol):
    names: Names

    def barrier(self, name: str, n: int) -> Barrier: ...


def coordination(session: Session) -> Coordination:
    """The barrier and name service of ``session``."""
    return Primitives(session)      # with the recipes merged: `return session`


def record_text(attrs: dict[str, Any]) -> tuple[str, list[Any]]:
    """``"%n { k: %d, ... }"`` and its parameters: keys are checked, values are data."""
    parts, params = [], []
    for key, value in sorted(attrs.items()):
        if not _KEY.match(key):
            raise QueryError(f"not an attribute key: {key!r}")
        if isinstance(value, bool):
            spec = "%b"
        elif isinstance(value, int):
            spec = "%d"
        elif isinstance(value, float):
            spec = "%f"
        elif isinstance(value, str):
            spec = "%s"
        else:
            raise QueryError(f"attribute {key}: cannot store a {type(value).__name__}")
        parts.append(f"{key}: {spec}")
        params.append(value)
    return "%n { " + ", ".join(parts) + " }", params


class _PrimitiveNames:
    """Name records ``<name> { ... }`` (persistent: in-process participants)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def register(self, name: str, **attrs: Any) -> Record:
        text, params = record_text(attrs)
        return self._s.set(text, name, *params)

    def lookup(self, q: str) -> Record:
        return self._s.get(q)

    def wait(self, q: str, timeout: float | None = None) -> Record:
        return self._s.wait_for(q, timeout=timeout)

    def unregister(self, name: str) -> None:
        self._s.delete("%n", name)


class _PrimitiveBarrier:
    """The paper's double barrier: each party adds a sequential record; the party that
    sees n of them sets ``<name>.ready``; the others wait for it. Leaving deletes the
    party's record and waits until every record is gone; then ``ready`` goes too."""

    def __init__(self, session: Session, name: str, n: int) -> None:
        if not isinstance(n, int) or n < 1:
            raise QueryError(f"a barrier needs n >= 1 parties, got {n!r}")
        self._s = session
        self.name = name
        self.n = n
        self._mine: str | None = None

    def enter(self, timeout: float | None = None) -> None:
        rec = self._s.set("%n { barrier: %s }", f"{self.name}.p", self.name,
                          sequential=True, ephemeral=True)
        self._mine = rec.name
        if len(self._s.get_names("_ { barrier: %s }", self.name)) >= self.n:
            self._s.set("%n { ready: %s }", f"{self.name}.ready", self.name)
        else:
            self._s.wait_for("%n", f"{self.name}.ready", timeout=timeout)

    def leave(self, timeout: float | None = None) -> None:
        if self._mine is not None:
            self._s.delete("%n", self._mine)
            self._mine = None
        gone = threading.Event()
        while True:
            gone.clear()
            trigger = Trigger(lambda _e: gone.set(), on=Mode.ON_DEL, install_if="found")
            if not self._s.get_names("_ { barrier: %s }", self.name, trigger=trigger):
                break
            try:
                if not gone.wait(timeout):
                    raise TimeoutError(f"barrier {self.name}: others did not leave in time")
            finally:
                with contextlib.suppress(TriggerNotFound):
                    self._s.remove_trigger(trigger)
        with contextlib.suppress(NotFound):
            self._s.delete("%n", f"{self.name}.ready")

    def __enter__(self) -> _PrimitiveBarrier:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()


class Primitives:
    """SPEC section 6's barrier and name service on the engine's primitives."""

    def __init__(self, session: Session) -> None:
        self._s = session
        self.names: Names = _PrimitiveNames(session)

    def barrier(self, name: str, n: int) -> Barrier:
        return _PrimitiveBarrier(self._s, name, n)
