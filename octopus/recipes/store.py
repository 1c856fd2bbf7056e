"""The store a recipe runs on, and the few helpers every recipe shares.

:class:`Store` is the part of the Octopus API (docs/api.md) that the recipes use.
:class:`octopus.Session` (hence :class:`octopus.Engine`) implements it in-process; the
network client of ``octopus.connect()`` implements it with the same names and
signatures, so one recipe module serves both. A recipe owns no state in the store
beyond its records, which (but for a barrier's round markers) it writes as ephemeral
records of the store's session: they vanish when that session ends.

Handlers given to triggers run on the store's event thread. The recipes' handlers only
set a :class:`threading.Event`; all waiting happens in the caller's thread. A recipe call
that may wait, made from a handler (``store.on_handler_thread()``), raises
:class:`~octopus.errors.LockError` at once (:func:`check_may_wait`): the event that
would end the wait is delivered by the very thread it blocks.

Most recipes keep their parties in *entries*: sequential ephemeral records
``<name>_<k> { <kind>: '<name>', ... }`` whose number ``k`` gives their order
(:func:`add_entry`, :func:`numbered`), and a waiter waits for the deletion of one
record at a time (:func:`wait_deleted`). The locks and the semaphore share the
``with`` statement of :class:`Acquirable`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol, Self, overload, runtime_checkable

from octopus.errors import EngineClosed, LockError, NotFound, QueryError, TriggerNotFound
from octopus.events import Event, Handler, Mode, Trigger
from octopus.explain import WaitExplanation
from octopus.record import Record, is_name

__all__ = [
    "WHY_LIMIT",
    "Acquirable",
    "Store",
    "add_entry",
    "check_may_wait",
    "check_name",
    "deadline_after",
    "delete_quietly",
    "discard",
    "flag_setter",
    "numbered",
    "remaining",
    "wait_deleted",
]

#: entries a recipe's ``why()`` lists at most
WHY_LIMIT = 1000


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

    def explain_wait(self, q: str, *params: object, limit: int = ...) -> WaitExplanation: ...

    def session(self) -> Store: ...

    def close(self) -> None: ...

    def on_handler_thread(self) -> bool: ...


class Acquirable(ABC):
    """A recipe object taken with ``acquire()`` and given back with ``release()``;
    ``with obj:`` does both (asyncio's locks share their ``async with`` the same way)."""

    @abstractmethod
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...

    @abstractmethod
    def release(self) -> None: ...

    def __enter__(self) -> Self:
        if not self.acquire():  # a blocking acquire fails only when cancel()ed
            raise LockError(f"{self!r}: acquire was cancelled")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_name(name: object, what: str = "name") -> str:
    """A recipe's name becomes part of record names: it must be a valid record name."""
    if not is_name(name):
        raise QueryError(f"{what} must be a valid record name, got {name!r}")
    return name


def check_may_wait(store: Store, what: str, blocking: bool = True,
                   timeout: float | None = None) -> None:
    """Refuse a call that may wait when it is made on ``store``'s handler thread.

    The wait would hang until its timeout, since the event that ends it is delivered by
    the thread it blocks. It is refused whether or not it would have had to wait, so
    that the error does not depend on contention; calls that cannot wait
    (``blocking=False``, a timeout of zero or less) are allowed."""
    if not blocking or (timeout is not None and timeout <= 0):
        return
    if store.on_handler_thread():
        raise LockError(f"{what} may wait, and it was called by an event handler: the "
                        "event that ends the wait would be delivered by the thread it "
                        "blocks. Call it outside the handler, or without waiting "
                        "(blocking=False or timeout=0)")


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


@overload
def remaining(deadline: float) -> float: ...
@overload
def remaining(deadline: float | None) -> float | None: ...
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


def add_entry(store: Store, name: str, **attributes: str | None) -> int:
    """Write the next entry ``<name>_<k> { <attributes> }`` (sequential, ephemeral) and
    return its k. An attribute whose value is None is left out."""
    present = {key: value for key, value in attributes.items() if value is not None}
    fields = ", ".join(f"{key}: %s" for key in present)
    entry = store.set(f"%n {{ {fields} }}", name + "_", *present.values(),
                      sequential=True, ephemeral=True)
    return int(entry.name[len(name) + 1:])


def numbered(records: Iterable[Record], name: str) -> dict[int, Record]:
    """The entries ``<name>_<k>`` among ``records`` by their k, in ascending order."""
    entries: dict[int, Record] = {}
    for record in records:
        k = record.name[len(name) + 1:]
        if record.name.startswith(name + "_") and k.isascii() and k.isdigit():
            entries[int(k)] = record
    return dict(sorted(entries.items()))


def wait_deleted(store: Store, name: str, deadline: float | None,
                 wake: threading.Event | None = None) -> bool:
    """Wait until record ``name`` is deleted; False if ``deadline`` passes first.

    True at once if there is no such record, and True as soon as ``wake`` is set: by the
    deletion, by the trigger's REMOVED event when the store's session closes, or by the
    caller for a reason of its own (which it must note elsewhere: ``wake`` is cleared on
    return, ready for the next wait). The caller looks again after any of them. No
    trigger outlives the call.
    """
    wake = threading.Event() if wake is None else wake
    fired = threading.Event()  # a one-shot trigger that fired is gone by itself

    def on_delete(event: Event) -> None:  # on the event thread: only set flags
        fired.set()
        wake.set()

    watch = Trigger(on_delete, on=Mode.ON_DEL, install_if="found")
    if not store.exists("%n", name, trigger=watch):  # reads and watches in one call
        return True
    woken = wake.wait(remaining(deadline))
    wake.clear()
    if not fired.is_set():
        discard(store, watch)
    return woken
