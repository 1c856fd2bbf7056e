"""The public surface: what `import octopus` offers; the exception tree (docs/guarantees.md)."""

from __future__ import annotations

import doctest

import pytest

import octopus
from octopus import errors


def test_public_names_are_pinned() -> None:
    assert octopus.__all__ == [
        "AsyncClient", "Atom", "Barrier", "BarrierExplanation", "Client", "ConditionFailed",
        "ConnectionState", "Election", "Engine", "EngineClosed", "Event", "Holding",
        "Invariant", "InvariantViolated", "KnowledgeBaseError", "LimitExceeded", "Lock",
        "LockError", "LockExplanation", "Mode", "NameService", "NotFound", "OctopusError",
        "ParameterError", "ParseError", "PersistenceError", "QueryError", "ReadWriteLock",
        "Record", "RoundInfo", "RowEvent", "RuleError", "RuleLimits", "RuleWatch", "Semaphore",
        "SemaphoreExplanation", "Session", "SessionExpired", "SessionInfo", "SetupError",
        "Subscription", "Trigger", "TriggerNotFound", "Unavailable", "WaitExplanation",
        "WaitTimeout", "Waiter", "connect",
        "connect_async", "read",
    ]
    assert octopus.__all__ == sorted(octopus.__all__)
    for name in octopus.__all__:
        assert getattr(octopus, name) is not None


@pytest.mark.parametrize(("error", "bases"), [
    (errors.QueryError, (errors.OctopusError, ValueError)),
    (errors.ParseError, (errors.QueryError,)),
    (errors.ParameterError, (errors.QueryError,)),
    (errors.NotFound, (errors.OctopusError, KeyError)),
    (errors.ConditionFailed, (errors.OctopusError,)),
    (errors.TriggerNotFound, (errors.OctopusError,)),
    (errors.EngineClosed, (errors.OctopusError,)),
    (errors.SessionExpired, (errors.EngineClosed,)),
    (errors.KnowledgeBaseError, (errors.OctopusError,)),
    (errors.WaitTimeout, (errors.OctopusError, TimeoutError)),
    (errors.LockError, (errors.OctopusError, RuntimeError)),
    (errors.SetupError, (errors.OctopusError,)),
    (errors.PersistenceError, (errors.OctopusError,)),
    (errors.RuleError, (errors.KnowledgeBaseError,)),
    (errors.InvariantViolated, (errors.ConditionFailed,)),
    (errors.Unavailable, (errors.OctopusError,)),
])
def test_exception_tree(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    for base in bases:
        assert issubclass(error, base)
    assert error.__doc__ and error.__doc__.startswith("Raised when")


def test_package_docstring_example_runs() -> None:
    failures, tried = doctest.testmod(octopus, verbose=False)
    assert tried > 0 and failures == 0
