"""Octopus for many processes: a RESP server (``octopus serve``) and its clients.

* :mod:`octopus.server.resp` — the protocol: parsers and encoders, no I/O.
* :mod:`octopus.server.server` — the asyncio service; a connection is a session.
* :mod:`octopus.server.client` — ``connect(url)`` (a :class:`Client` with the Session
  API) and ``connect_async(url)`` (its asyncio twin).

The protocol is documented in docs/server.md.
"""

from octopus.server.client import (
    AsyncClient,
    AuthenticationError,
    Client,
    connect,
    connect_async,
)

__all__ = ["AsyncClient", "AuthenticationError", "Client", "connect", "connect_async"]
