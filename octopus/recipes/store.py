"""The store a recipe runs on, and the few helpers every recipe shares.

:class:`Store` is the part of the Octopus API (SPEC sections 3-4) that the recipes use.
:class:`octopus.Session` (hence :class:`octopus.Engine`) implements it in-process; the
network client of ``octopus.connect()`` implements it with the same names and
signatures, so one recipe module serves both. A recipe owns no state in the store
beyond its records, which it writes as ephemeral records of the store's session: they
vanish when that session ends.

Handlers given to triggers run on the store's event thread. The recipes' handlers only
set a :class:`threading.Event`; all waiting happens in the caller's thread.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Protocol, runtime_checkable

from octopus.errors import EngineClosed, LockError, NotFound, QueryError, TriggerNotFound
from octopus.events import Handler, Mode, Trigger
from octopus.record import Record, is_name

__all__ = [
    "Store",
    "check_name",
    "deadline_after",
    "delete_quietly",
    "discard",
    "flag_setter",
    "remaining",
    "sequence_number",
]


@runtime_checkable
class Store(Protocol):
    """What a recipe needs from a session or a client."""

    def get(self, q: str, *params: object, trigger: Trigger | None = None) -> Record: ...

    def get_names(self, q: str, *params: object,
                  trigger: Trigger | None = None) -> list[str]: ...

    def get_all(self, q: str, *params: object) -> list[Record]: ...

    def set(self, rec: str, *params: object, sequential: bool = False,
            ephemeral: bool = False, trigger: Trigger | None = None) -> Record: ...

    def delete(self, q: str, *params: object, trigger: Trigger | None = None) -> Record: ...

    def exists(self, q: str, *params: object, trigger: Trigger | None = None) -> bool: ...

    def watch(self, q: str, handler: Handler, *params: object,
              on: Mode = Mode.ON_SET | Mode.ON_DEL, persist: bool = True) -> Trigger: ...

    def remove_trigger(self, trigger: Trigger | int) -> None: ...

    def wait_for(self, q: str, *params: object, timeout: float | None = None) -> Record: ...

    def session(self) -> Store: ...

    def close(self) -> None: ...


def check_name(name: object, what: str = "name") -> str:
    """A recipe's name becomes part of record names: it must be a valid record name."""
    if not is_name(name):
        raise QueryError(f"{what} must be a valid record name, got {name!r}")
    return name  # type: ignore[return-value]


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic time at which ``timeout`` seconds from now end (None: never).

    A negative timeout means "do not wait"; one too long to wait for means "forever"."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or math.isnan(timeout):
        raise LockError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if timeout >= threading.TIMEOUT_MAX:
        return None
    return time.monotonic() + max(timeout, 0.0)


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative; None: no deadline)."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def discard(store: Store, trigger: Trigger | None) -> None:
    """Remove a one-shot trigger that may have fired already (or died with its session)."""
    if trigger is not None and trigger.installed:
        with contextlib.suppress(TriggerNotFound, EngineClosed):
            store.remove_trigger(trigger)


def delete_quietly(store: Store, name: str) -> bool:
    """Delete record ``name``; False if it was already gone (or its session closed)."""
    try:
        store.delete("%n", name)
    except (NotFound, EngineClosed):
        return False
    return True


def flag_setter(flag: threading.Event) -> Handler:
    """A trigger handler that only sets ``flag``: handlers run on the event thread and
    must never block there, so recipes wait on the flag in their own thread."""
    return lambda event: flag.set()


def sequence_number(name: str, base: str) -> int | None:
    """k for a sequential record ``<base><k>``, None for any other name."""
    rest = name[len(base):]
    if name.startswith(base) and rest.isascii() and rest.isdigit():
        return int(rest)
    return None
