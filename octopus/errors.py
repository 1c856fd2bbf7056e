"""The exceptions Octopus raises.

Every error the public API raises for bad input or a failed precondition is one of
these; nothing else escapes for bad input. The tree::

    OctopusError
    ├── QueryError              the query or record text (or its use) is invalid
    │   ├── ParseError          the text does not follow the grammar (line, column, text)
    │   └── ParameterError      placeholder parameters of the wrong number or type
    ├── NotFound                no record matched (also a KeyError)
    ├── ConditionFailed         a compare-and-set's conditions did not hold
    ├── TriggerNotFound         removing a trigger or subscription that is not installed
    ├── EngineClosed            the engine, session or connection is closed
    ├── KnowledgeBaseError      a Prolog error from the knowledge base (message included)
    ├── WaitTimeout             a wait gave up (also the builtin TimeoutError)
    ├── LockError               misuse of a recipe, e.g. releasing an unheld lock
    │                           (also a RuntimeError)
    └── LimitExceeded           a configured limit was reached, e.g. the triggers one
                                server connection may install
"""

from __future__ import annotations

__all__ = [
    "ConditionFailed",
    "EngineClosed",
    "KnowledgeBaseError",
    "LimitExceeded",
    "LockError",
    "NotFound",
    "OctopusError",
    "ParameterError",
    "ParseError",
    "QueryError",
    "TriggerNotFound",
    "WaitTimeout",
]


class OctopusError(Exception):
    """Base class of every Octopus error."""


class QueryError(OctopusError):
    """Raised when a query or record is invalid or used where it does not fit."""


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


class TriggerNotFound(OctopusError):
    """Raised when removing a trigger or subscription that is not installed."""


class EngineClosed(OctopusError):
    """Raised when calling an engine, session or client that has been closed."""


class KnowledgeBaseError(OctopusError):
    """Raised when a knowledge-base goal or file raises a Prolog error."""


class WaitTimeout(OctopusError, TimeoutError):
    """Raised when a wait (wait_for, a lookup with a timeout) runs out of time."""


class LockError(OctopusError, RuntimeError):
    """Raised when a recipe is misused, such as releasing a lock one does not hold."""


class LimitExceeded(OctopusError):
    """Raised when a configured limit would be passed (the request changes nothing)."""
