"""The knowledge base (SKB): trusted facts and rules next to the store, queried by goals.

Every engine has its own :class:`KnowledgeBase`, which lives in its own Prolog module
(named from a counter by :mod:`octopus._prolog`, never from user data). Knowledge-base
files and goal text are trusted application code, like a plugin, but they cannot reach
the store: a file that defines, asserts or retracts ``rec/3``, ``key_index/2``, ``seq/2``
or ``trig/2`` defines its own predicates in its own module (prolog/skb.pl). The Prolog
calls and their replies are in :class:`octopus.adapter.PrologKnowledgeBase`.

Guarantees:

1. Values travel as data. ``prolog(goal, X=...)`` binds ``X`` after parsing the goal
   text; a binding can never change the goal's structure. A Python ``str`` binds as an
   atom.
2. A load is all or nothing: a file with a syntax error, a clause for another module or
   a failing directive loads nothing (operator declarations, which later terms need to
   parse, are the exception: they take effect as they are read).
3. ``consult(path)`` of a file consulted before replaces that file's clauses (like
   Prolog's reconsult); ``add_facts(text)`` always adds.
4. Every Prolog error becomes a :class:`~octopus.errors.KnowledgeBaseError` carrying
   Prolog's message. Solutions come back as plain Python values.
5. Knowledge-base calls do not take the engine's store lock: a trigger handler may query
   the knowledge base while other threads change the store.
6. A durable engine journals every load (the text of a consulted file, added facts,
   rows) after it was read and checked and before it is committed; one that then
   fails to commit is cancelled in the journal (octopus/durable/). Facts a goal asserts
   through ``prolog()`` are not journaled.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from octopus.adapter import PrologKnowledgeBase
from octopus.errors import EngineClosed, KnowledgeBaseError

__all__ = ["KnowledgeBase", "Progress"]

#: ``progress`` argument of the loaders: ``None`` draws a bar for large inputs on a
#: terminal, ``True`` always, ``False`` never; a callable gets ``(done, total)``.
Progress = bool | Callable[[int, int], None] | None

class KnowledgeJournal(Protocol):
    """Where a durable engine journals knowledge-base loads (octopus/durable/)."""

    def log_kb_text(self, key: str | None, text: str) -> int: ...
    def log_kb_rows(self, predicate: str, rows: list[list[object]]) -> int: ...
    def cancel_kb(self) -> None: ...
    def acknowledge(self, ticket: int) -> None: ...


_VARIABLE = re.compile(r"[A-Z_][A-Za-z0-9_]*\Z")
_PREDICATE = re.compile(r"[a-z][A-Za-z0-9_]*\Z")
_AUTO_BAR_BYTES = 1 << 20          # inputs at least this large get a bar on a terminal
_TERMS_PER_CHUNK = 4000            # terms read per Prolog call between progress updates
_ROWS_PER_BATCH = 5000


def _check_value(value: object, where: str) -> None:
    """Refuse values janus cannot pass as plain data (before anything runs)."""
    if value is None or isinstance(value, bool | int | float | str):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_value(item, where)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise KnowledgeBaseError(f"{where}: dict keys must be str, got {key!r}")
            _check_value(item, where)
        return
    raise KnowledgeBaseError(f"{where}: cannot pass a {type(value).__name__} to Prolog")


class KnowledgeBase:
    """One engine's knowledge base. Thread-safe; loads are serialised."""

    def __init__(self) -> None:
        self._prolog = PrologKnowledgeBase()
        self.module = self._prolog.module
        self._load_lock = threading.Lock()
        self._closed = False
        self.journal: KnowledgeJournal | None = None

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosed("the engine (and its knowledge base) is closed")

    # --- loading ---------------------------------------------------------------------

    def consult(self, path: str | os.PathLike[str], *, progress: Progress = None) -> int:
        """Load a file of facts and rules; return the number of clauses added.

        Consulting a file again replaces the clauses of its previous load."""
        if not isinstance(path, str | os.PathLike):
            raise KnowledgeBaseError(f"path must be a str or path, got {type(path).__name__}")
        resolved = Path(path).resolve()
        if not resolved.is_file():
            raise KnowledgeBaseError(f"no such file: {path}")
        source = ("file", str(resolved))
        if self.journal is not None:
            # The journal keeps the text that was loaded, not the file name: the file
            # may change or go before the next start.
            try:
                source = ("text", resolved.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as e:
                raise KnowledgeBaseError(f"cannot read {path}: {e}") from None
        return self._load(source, str(resolved), progress, f"consult {resolved.name}")

    def replay_text(self, key: str | None, text: str) -> int:
        """Load journaled text again, journaling nothing (a durable engine starting)."""
        return self._load(("text", text), key, False, "replay", journal=False)

    def replay_rows(self, predicate: str, rows: list[list[object]]) -> int:
        """Add journaled rows again, journaling nothing."""
        with self._load_lock:
            return self._prolog.add_rows(predicate, rows)

    def add_facts(self, text: str, *, progress: Progress = None) -> int:
        """Add the clauses in ``text`` (Prolog syntax); return how many were added."""
        if not isinstance(text, str):
            raise KnowledgeBaseError(f"text must be a str, got {type(text).__name__}")
        return self._load(("text", text), None, progress, "add facts")

    def _load(self, source: tuple[str, str], key: str | None, progress: Progress,
              what: str, *, journal: bool = True) -> int:
        self._check_open()
        journaled = self.journal if journal else None
        with self._load_lock:
            total = self._prolog.load_begin(source)
            try:
                with _reporter(progress, total, what) as report:
                    while True:
                        pos, done = self._prolog.load_chunk(_TERMS_PER_CHUNK)
                        if done:
                            break
                        report(pos)
                    ticket = 0
                    if journaled is not None:
                        assert source[0] == "text"
                        ticket = journaled.log_kb_text(key, source[1])
                    # the commit is one transaction: the bar's last step
                    try:
                        count = self._prolog.load_commit(key)
                    except BaseException:
                        if journaled is not None:
                            journaled.cancel_kb()
                        raise
                    report(total)
                    if journaled is not None:
                        journaled.acknowledge(ticket)
                    return count
            finally:
                self._prolog.load_abort()

    def add_rows(self, predicate: str, rows: Iterable[Sequence[object]], *,
                 progress: Progress = None, total: int | None = None) -> int:
        """Assert ``predicate(*row)`` for every row; values travel as data.

        Rows are added in batches, each batch atomically; a bad row raises before its
        batch changes anything. ``total`` (the number of rows, if known) sizes the
        progress bar. Returns the number of facts added."""
        self._check_open()
        if not isinstance(predicate, str) or not _PREDICATE.match(predicate):
            raise KnowledgeBaseError(f"predicate must be a plain Prolog name, got {predicate!r}")
        count = 0
        with _reporter(progress, total or 0, f"add {predicate}") as report:
            batch: list[list[object]] = []
            for row in rows:
                if not isinstance(row, list | tuple):
                    raise KnowledgeBaseError(f"a row must be a tuple or list, got {row!r}")
                _check_value(row, predicate)
                batch.append(list(row))
                if len(batch) >= _ROWS_PER_BATCH:
                    count += self._add_rows(predicate, batch)
                    batch = []
                    report(count)
            if batch:
                count += self._add_rows(predicate, batch)
            report(count)
        return count

    def _add_rows(self, predicate: str, batch: list[list[object]]) -> int:
        journal = self.journal
        if journal is None:
            return self._prolog.add_rows(predicate, batch)
        with self._load_lock:       # journal entries and commits in the same order
            ticket = journal.log_kb_rows(predicate, batch)
            try:
                count = self._prolog.add_rows(predicate, batch)
            except BaseException:
                journal.cancel_kb()
                raise
        journal.acknowledge(ticket)
        return count

    # --- querying --------------------------------------------------------------------

    def prolog(self, goal: str, *, limit: int | None = None,
               **bindings: object) -> list[dict[str, Any]]:
        """All solutions of ``goal`` (at most ``limit``), each a dict of the goal's named
        variables (except inputs and names starting with ``_``) to plain values."""
        self._check_open()
        if not isinstance(goal, str):
            raise KnowledgeBaseError(f"goal must be a str, got {type(goal).__name__}")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise KnowledgeBaseError(f"limit must be a positive int, got {limit!r}")
        inputs = []
        for name, value in bindings.items():
            if not _VARIABLE.match(name):
                raise KnowledgeBaseError(f"binding {name!r} is not a Prolog variable name")
            _check_value(value, f"binding {name}")
            inputs.append((name, value))
        return self._prolog.query(goal, inputs, limit)

    def prolog_once(self, goal: str, **bindings: object) -> dict[str, Any] | None:
        """The first solution of ``goal`` as a dict, or None if it has none."""
        solutions = self.prolog(goal, limit=1, **bindings)
        return solutions[0] if solutions else None

    def close(self) -> None:
        """Drop every fact and rule (the engine is closing)."""
        with self._load_lock:
            if self._closed:
                return
            self._closed = True
            self._prolog.destroy()


@contextmanager
def _reporter(progress: Progress, total: int, what: str) -> Iterator[Callable[[int], None]]:
    """A ``report(done)`` function that draws the requested kind of progress."""
    if callable(progress) and not isinstance(progress, bool):
        callback = progress
        yield lambda done: callback(done, total)
        return
    show = progress is True or (progress is None and total >= _AUTO_BAR_BYTES
                                and sys.stderr.isatty())
    if not show:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [TextColumn("[bold blue]{task.description}"), BarColumn(),
               MofNCompleteColumn() if total else TextColumn("{task.completed}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(what, total=total or None)
        yield lambda done: bar.update(task, completed=done)
