"""The exceptions Octopus raises.

Every error the public API raises for bad input or a failed precondition is one of
these; nothing else escapes for bad input. The rule for bad input: a bad argument
(query or record text, a placeholder parameter, a value or name given to ``Record``,
an argument of the wrong type) is a :class:`QueryError` or one of its subclasses, and
``QueryError`` is also the builtin ``ValueError``, so code written against Python's own
convention keeps working. The tree::

    OctopusError
    ├── QueryError              bad input: text, parameters, values (also a ValueError)
    │   ├── ParseError          the text does not follow the grammar (line, column, text)
    │   └── ParameterError      placeholder parameters of the wrong number or type
    ├── NotFound                no record matched (also a KeyError)
    ├── ConditionFailed         a compare-and-set's conditions did not hold
    │   └── InvariantViolated   the write would make a row of an invariant's
    │                           violation relation appear (docs/rules.md)
    ├── TriggerNotFound         removing a trigger or subscription that is not installed
    ├── EngineClosed            the engine, session or connection is closed
    ├── KnowledgeBaseError      a Prolog error from the knowledge base (message included)
    │   └── RuleError           a rule outside the rule family, unsafe, or over its limits
    ├── WaitTimeout             a wait gave up (also the builtin TimeoutError)
    ├── LockError               misuse of a recipe, e.g. releasing an unheld lock
    │                           (also a RuntimeError)
    ├── LimitExceeded           a configured limit was reached, e.g. the triggers one
    │                           server connection may install
    ├── PersistenceError        a durable engine cannot write or read its data directory
    ├── Unavailable             a replicated engine cannot reach a quorum of its etcd
    │                           cluster (or its node), so a write or sync cannot be made
    └── SetupError              SWI-Prolog or janus-swi is missing or unusable (the
                                message says what to install)
"""

from __future__ import annotations

__all__ = [
    "ConditionFailed",
    "EngineClosed",
    "InvariantViolated",
    "KnowledgeBaseError",
    "LimitExceeded",
    "LockError",
    "NotFound",
    "OctopusError",
    "ParameterError",
    "ParseError",
    "PersistenceError",
    "QueryError",
    "RuleError",
    "SessionExpired",
    "SetupError",
    "TriggerNotFound",
    "Unavailable",
    "WaitTimeout",
]


class OctopusError(Exception):
    """Base class of every Octopus error."""


class QueryError(OctopusError, ValueError):
    """Raised when an argument is bad input: a query or record that is invalid or used
    where it does not fit, a value or name that cannot be stored, a wrong argument type."""


class ParseError(QueryError):
    """Raised when the text does not follow the grammar.

    ``line`` and ``column`` are 1-based; ``text`` is the offending piece of input
    (empty at the end of the input).
    """

    def __init__(self, message: str, *, line: int, column: int, text: str) -> None:
        super().__init__(f"{message} at line {line}, column {column}")
        self.reason = message
        self.line = line
        self.column = column
        self.text = text


class ParameterError(QueryError):
    """Raised when placeholder parameters do not fit the query (count or type)."""


class NotFound(OctopusError, KeyError):
    """Raised when no record matches a get, delete or lookup."""

    def __str__(self) -> str:
        # KeyError's str() quotes its argument; ours is a sentence.
        return str(self.args[0]) if self.args else "not found"


class ConditionFailed(OctopusError):
    """Raised when the conditions of a compare-and-set do not hold."""


class InvariantViolated(ConditionFailed):
    """Raised when a set or delete would make a row of an invariant's violation
    relation appear (docs/rules.md). Nothing changed. ``invariant`` is its name,
    ``row`` the offending row as text (``"Dev = 'hw.pci.device.3'"``)."""

    def __init__(self, message: str, *, invariant: str = "", row: str = "") -> None:
        super().__init__(message)
        self.invariant = invariant
        self.row = row


class TriggerNotFound(OctopusError):
    """Raised when removing a trigger or subscription that is not installed."""


class EngineClosed(OctopusError):
    """Raised when calling an engine, session or client that has been closed."""


class SessionExpired(EngineClosed):
    """Raised when a client's server session ended while it was disconnected: it was not
    resumed within its timeout, or the events it missed were no longer all kept. Its
    ephemeral records and locks are gone (docs/server.md)."""


class KnowledgeBaseError(OctopusError):
    """Raised when a knowledge-base goal or file raises a Prolog error."""


class RuleError(KnowledgeBaseError):
    """Raised when a rule cannot be watched or enforced: it is outside the rule family
    (docs/rules.md), unsafe (a variable no positive literal binds), refers to an
    unknown procedure, or needed more than its limits (inferences, rows)."""


class WaitTimeout(OctopusError, TimeoutError):
    """Raised when a wait (wait_for, a lookup with a timeout) runs out of time."""


class LockError(OctopusError, RuntimeError):
    """Raised when a recipe is misused, such as releasing a lock one does not hold."""


class LimitExceeded(OctopusError):
    """Raised when a configured limit would be passed (the request changes nothing)."""


class PersistenceError(OctopusError):
    """Raised when a durable engine cannot use its data directory: a write that cannot
    reach the disk (no space, an I/O error, a read-only directory), a corrupt journal or
    snapshot, a directory another engine holds.

    ``applied`` is False when nothing changed (the usual case: the journal refused the
    change before the store applied it). It is True only when the change was applied
    and then its fsync failed: the change is in memory and may or may not be on disk,
    like a timeout's outcome (docs/durability.md).
    """

    def __init__(self, message: str, *, applied: bool = False) -> None:
        super().__init__(message)
        self.applied = applied


class Unavailable(OctopusError):
    """Raised when a write, ``sync()`` or session change of a replicated engine cannot
    be made because a quorum of its etcd cluster cannot be reached (docs/cluster.md).
    Reads go on from the local replica meanwhile. When the message says the outcome is
    unknown, the change may or may not have been made: look before retrying it."""


class SetupError(OctopusError):
    """Raised when SWI-Prolog or janus-swi cannot be found or loaded.

    ``str()`` is the reason followed by what to install (:data:`SETUP_HINT`): octopus runs
    SWI-Prolog in-process through janus-swi, which pip cannot install by itself correctly
    (a janus-swi wheel is linked against one particular SWI-Prolog). ``reason`` is the
    reason alone.
    """

    def __init__(self, reason: str, *, hint: bool = True) -> None:
        super().__init__(f"{reason}\n{SETUP_HINT}" if hint else reason)
        self.reason = reason


#: What to install, appended to every :class:`SetupError` about SWI-Prolog or janus-swi.
SETUP_HINT = (
    "octopus needs SWI-Prolog >= 9.1.12 and janus-swi built against that SWI-Prolog:\n"
    "  1. install SWI-Prolog >= 9.1.12 (https://www.swi-prolog.org/download/stable, or\n"
    "     your distribution's swi-prolog-nox if new enough) and put its `swipl` first on\n"
    "     PATH (or set SWIPL=/path/to/swipl);\n"
    "  2. build janus-swi against it: pip install --force-reinstall --no-cache-dir\n"
    "     --no-binary janus-swi janus-swi\n"
    "From a source checkout, `make setup` does both (it builds SWI-Prolog if needed)."
)
