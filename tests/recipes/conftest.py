"""Fixtures shared by the recipe tests.

``store`` yields a fresh implementation of :class:`octopus.recipes.Store`. Today that
is an in-process :class:`octopus.Engine`; to run the whole suite over the network
client, add a factory to ``STORES`` that starts a server and yields a connected client
(whose ``session()`` opens another connection). Nothing else in the tests needs to
change: they use only the Store API, ``store.session()`` and the recipe factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

import octopus


@contextmanager
def _engine() -> Iterator[octopus.Engine]:
    engine = octopus.Engine()
    try:
        yield engine
    finally:
        engine.close()


@contextmanager
def _client() -> Iterator[Any]:
    """A network client of a real server (sockets, RESP, sessions) with a fresh engine."""
    from octopus.server.testing import serve_in_thread

    with serve_in_thread() as url, octopus.connect(url) as client:
        yield client


STORES: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "client": _client,
    "engine": _engine,
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    with STORES[request.param]() as s:
        yield s
