"""Octopus: a coordination engine — records, queries, triggers, publish/subscribe and
synchronization recipes over a SWI-Prolog knowledge base.

    >>> import octopus
    >>> with octopus.Engine() as engine:
    ...     _ = engine.set("hw.pci.device.0 { vendor: 0x8086, device_id: 0x100e }")
    ...     engine.get("_ { vendor: 32902 }").name
    'hw.pci.device.0'
"""

from octopus.engine import Engine, Session
from octopus.errors import (
    ConditionFailed,
    EngineClosed,
    KnowledgeBaseError,
    LimitExceeded,
    LockError,
    NotFound,
    OctopusError,
    ParameterError,
    ParseError,
    PersistenceError,
    QueryError,
    SessionExpired,
    SetupError,
    TriggerNotFound,
    Unavailable,
    WaitTimeout,
)
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.reading import read
from octopus.recipes import Barrier, Election, Lock, NameService, ReadWriteLock, Semaphore
from octopus.record import Atom, Record
from octopus.server.async_client import AsyncClient, connect_async
from octopus.server.client import Client, connect
from octopus.server.client_base import ConnectionState

__all__ = [
    "AsyncClient",
    "Atom",
    "Barrier",
    "Client",
    "ConditionFailed",
    "ConnectionState",
    "Election",
    "Engine",
    "EngineClosed",
    "Event",
    "KnowledgeBaseError",
    "LimitExceeded",
    "Lock",
    "LockError",
    "Mode",
    "NameService",
    "NotFound",
    "OctopusError",
    "ParameterError",
    "ParseError",
    "PersistenceError",
    "QueryError",
    "ReadWriteLock",
    "Record",
    "Semaphore",
    "Session",
    "SessionExpired",
    "SetupError",
    "Subscription",
    "Trigger",
    "TriggerNotFound",
    "Unavailable",
    "WaitTimeout",
    "connect",
    "connect_async",
    "read",
]

__version__ = "0.1.0"
