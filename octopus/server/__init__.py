"""Octopus for many processes: a RESP server (``octopus serve``) and its clients.

* :mod:`octopus.server.resp` — the protocol: parsers and encoders, no I/O.
* :mod:`octopus.server.server` — the asyncio service; a connection is a session.
* :mod:`octopus.server.commands` — the commands a connection runs.
* :mod:`octopus.server.wire` — records and trigger modes as the server sends them.
* :mod:`octopus.server.client` — ``connect(url)`` (a :class:`Client` with the Session
  API); :mod:`octopus.server.async_client` — ``connect_async(url)`` (its asyncio twin);
  :mod:`octopus.server.client_base` — what the two share, without I/O.

The protocol is documented in docs/server.md.
"""

from octopus.server.async_client import AsyncClient, connect_async
from octopus.server.client import Client, connect
from octopus.server.client_base import AuthenticationError

__all__ = ["AsyncClient", "AuthenticationError", "Client", "connect", "connect_async"]
