"""The four handles on a store are twins: Session, Client, AsyncSession, AsyncClient.

The sync pair and the async pair have the same methods with the same parameters; the
async pair awaits what the sync pair returns. The differences are few and listed here
(and in docs/guarantees.md): the in-process knowledge base, loading rules and watching
a rule's text (over the wire only relations the server's rules declared are watched), a
session's id and name, and ``set_many`` exist only in-process, ``info`` and the
connection's state and listeners only over the network, and the async pair adds event
streams.
"""

from __future__ import annotations

import inspect
from typing import Any

from octopus.aio import AsyncSession
from octopus.engine import Session
from octopus.server.async_client import AsyncClient
from octopus.server.client import Client

IN_PROCESS_ONLY = {"kb", "consult", "add_facts", "prolog", "prolog_once", "prolog_iter",
                   "set_many", "rules", "watch_rule", "explain_rule", "id", "name"}
NETWORK_ONLY = {"info", "add_listener", "remove_listener", "state"}
# Connection states: synchronous on both clients (a listener is registered at once).
NOT_AWAITED = {"add_listener", "remove_listener"}
# the recipes ask a blocking store whether they run on its handler thread; the async
# twins hand the recipes a blocking store of their own (AsyncRecipeFactories)
SYNC_ONLY = {"on_handler_thread"}
ASYNC_ONLY = {"events", "messages"}
RECIPE_FACTORIES = {"lock", "rwlock", "barrier", "semaphore", "election", "names"}
PROPERTIES = {"closed", "names", "state"}


def api(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def parameters(cls: type, name: str) -> list[tuple[str, Any, Any]]:
    member = inspect.getattr_static(cls, name)
    if isinstance(member, property) or name == "revision":
        return []           # a property, or (async) a coroutine method without arguments
    sig = inspect.signature(getattr(cls, name))
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_the_four_handles_are_twins() -> None:
    shared = api(Client) - NETWORK_ONLY
    assert api(Session) - IN_PROCESS_ONLY == shared
    assert api(AsyncClient) - NETWORK_ONLY - ASYNC_ONLY == shared - SYNC_ONLY
    assert api(AsyncSession) - ASYNC_ONLY - {"set_many"} == shared - SYNC_ONLY
    for name in sorted(shared - SYNC_ONLY | NETWORK_ONLY):
        assert parameters(Client, name) == parameters(AsyncClient, name), name
    for name in sorted(shared - SYNC_ONLY | {"set_many"}):
        assert parameters(Session, name) == parameters(AsyncSession, name), name
    for name in sorted(shared):
        assert parameters(Session, name) == parameters(Client, name), name


def test_the_async_twins_await_what_the_sync_twins_return() -> None:
    for sync, twin in ((Session, AsyncSession), (Client, AsyncClient)):
        for name in sorted(api(sync) & api(twin)):
            member = getattr(twin, name)
            if name in PROPERTIES:
                assert isinstance(inspect.getattr_static(twin, name), property), name
            elif name in RECIPE_FACTORIES or name in NOT_AWAITED:
                assert not inspect.iscoroutinefunction(member), name
            else:
                assert inspect.iscoroutinefunction(member), f"{twin.__name__}.{name}"
        # revision is a property on the sync twins and awaited on the async ones
        assert isinstance(inspect.getattr_static(sync, "revision"), property)
