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
    InvariantViolated,
    KnowledgeBaseError,
    LimitExceeded,
    LockError,
    NotFound,
    OctopusError,
    ParameterError,
    ParseError,
    PersistenceError,
    QueryError,
    RuleError,
    SessionExpired,
    SetupError,
    TriggerNotFound,
    Unavailable,
    WaitTimeout,
)
from octopus.events import Event, Mode, Subscription, Trigger
from octopus.explain import (
    BarrierExplanation,
    Holding,
    LockExplanation,
    RoundInfo,
    SemaphoreExplanation,
    SessionInfo,
    Waiter,
    WaitExplanation,
)
from octopus.reading import read
from octopus.recipes import Barrier, Election, Lock, NameService, ReadWriteLock, Semaphore
from octopus.record import Atom, Record
from octopus.rules import Invariant, RowEvent, RuleLimits, RuleWatch
from octopus.server.async_client import AsyncClient, connect_async
from octopus.server.client import Client, connect
from octopus.server.client_base import ConnectionState

__all__ = [
    "AsyncClient",
    "Atom",
    "Barrier",
    "BarrierExplanation",
    "Client",
    "ConditionFailed",
    "ConnectionState",
    "Election",
    "Engine",
    "EngineClosed",
    "Event",
    "Holding",
    "Invariant",
    "InvariantViolated",
    "KnowledgeBaseError",
    "LimitExceeded",
    "Lock",
    "LockError",
    "LockExplanation",
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
    "RoundInfo",
    "RowEvent",
    "RuleError",
    "RuleLimits",
    "RuleWatch",
    "Semaphore",
    "SemaphoreExplanation",
    "Session",
    "SessionExpired",
    "SessionInfo",
    "SetupError",
    "Subscription",
    "Trigger",
    "TriggerNotFound",
    "Unavailable",
    "WaitExplanation",
    "WaitTimeout",
    "Waiter",
    "connect",
    "connect_async",
    "read",
]

__version__ = "0.1.0"
