"""The knowledge base (SKB): trusted facts and rules next to the store, queried by goals.

Every engine has its own :class:`KnowledgeBase`, which lives in its own Prolog module
(named from a counter by :mod:`octopus._prolog`, never from user data). Knowledge-base
files and goal text are trusted application code, like a plugin, but they are confined
to that module: a sandbox (prolog/skb.pl, on SWI-Prolog's library(sandbox)) refuses,
before anything runs, every goal and directive that could reach another module (the
store, another engine's knowledge base), a file, a process, the process's flags or
its exit. The Prolog calls and their replies are in
:class:`octopus.adapter.PrologKnowledgeBase`; what is allowed is listed in
docs/knowledge-base.md.

Guarantees:

1. Values travel as data. ``prolog(goal, X=...)`` binds ``X`` after parsing the goal
   text; a binding can never change the goal's structure. A Python ``str`` binds as an
   atom.
2. A load is all or nothing: a file with a syntax error, a clause for another module,
   a refused directive or a failing one loads nothing (operator declarations, which
   later terms need to parse, are the exception: they take effect as they are read).
3. ``consult(path)`` of a file consulted before replaces that file's clauses (like
   Prolog's reconsult); ``add_facts(text)`` always adds.
4. Every Prolog error, every refusal of the sandbox and every exceeded limit becomes a
   :class:`~octopus.errors.KnowledgeBaseError` carrying the reason; ``halt`` is one
   too. Solutions come back as plain Python values.
5. Every call is bounded (:class:`Limits`): time, inferences, Prolog stack, number and
   size of the solutions returned. ``prolog_iter`` gives solutions lazily; an
   iterator holds a Prolog engine, never a lock, and one dropped without ``close()``
   is reclaimed by the next call.
6. Knowledge-base calls do not take the engine's store lock: a trigger handler may query
   the knowledge base while other threads change the store. Loading new rules waits
   for the goals running at that moment, so a goal never runs code it was not checked
   against.
7. A durable engine journals every load (the text of a consulted file, added facts,
   rows) after it was read and checked and before it is committed; one that then
   fails to commit (a refused or failing directive, a limit) is cancelled in the
   journal (octopus/durable/). Recovery loads the journaled text again through the
   same sandbox, within the limits the engine was made with. Facts a goal asserts
   through ``prolog()`` are not journaled.
"""

from __future__ import annotations

import collections
import math
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

from octopus.adapter import PrologKnowledgeBase
from octopus.errors import EngineClosed, KnowledgeBaseError

__all__ = ["KnowledgeBase", "Limits", "Progress", "Solutions"]

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
_LONGEST_TIMEOUT = 86_400.0        # a day: longer is a mistake, not a limit


@dataclass(frozen=True)
class Limits:
    """What one knowledge-base call may spend. A call is ``prolog()``, ``prolog_once()``,
    one step of a :class:`Solutions` iterator, or one directive of a load. Past any
    limit the call raises :class:`~octopus.errors.KnowledgeBaseError` and leaves the
    knowledge base as it was (but for facts the goal asserted before).

    - ``timeout``: seconds of wall-clock time;
    - ``inferences``: Prolog inferences (calls), so a runaway loop stops even on a
      machine too busy for the clock to matter;
    - ``stack_bytes``: the Prolog stacks of the goal (SWI-Prolog's default is 1 GiB);
    - ``solutions``: how many solutions ``prolog()`` without ``limit=`` collects
      before it refuses (more solutions are an error, not silently dropped);
    - ``reply_bytes``: the size of the solutions one call returns (approximate: text
      length plus 16 bytes per value);
    - ``iterators``: open :class:`Solutions` iterators per knowledge base.
    """

    timeout: float = 10.0
    inferences: int = 10_000_000
    stack_bytes: int = 128 << 20
    solutions: int = 100_000
    reply_bytes: int = 16 << 20
    iterators: int = 256

    def __post_init__(self) -> None:
        _check_timeout(self.timeout, "Limits.timeout")
        for name in ("inferences", "stack_bytes", "solutions", "reply_bytes", "iterators"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise KnowledgeBaseError(f"Limits.{name} must be a positive int, got {value!r}")
        if self.stack_bytes < 1 << 20:
            raise KnowledgeBaseError("Limits.stack_bytes must be at least 1 MiB")

    def _prolog(self, timeout: float | None = None) -> list[float | int]:
        return [self.timeout if timeout is None else timeout, self.inferences,
                self.stack_bytes, self.solutions, self.reply_bytes]


def _check_timeout(timeout: object, what: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not math.isfinite(timeout) or not 0 < timeout <= _LONGEST_TIMEOUT:
        raise KnowledgeBaseError(f"{what} must be a number of seconds in (0, "
                                 f"{_LONGEST_TIMEOUT:g}], got {timeout!r}")
    return float(timeout)


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


class _Gate:
    """Goals share the knowledge base; committing a load takes it alone, so that no goal
    runs code it was not checked against. A waiting commit goes before new goals.

    ``with gate.shared():`` around a goal, ``with gate.exclusive():`` around a commit.
    The shared side is on every call's path, so it is a plain context manager that
    notifies only when a commit waits (a generator-based one cost 3 us a call)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._goals = 0
        self._committing = False
        self._waiting = 0

    def shared(self) -> _Gate:
        return self

    def __enter__(self) -> None:
        with self._cond:
            while self._committing or self._waiting:
                self._cond.wait()
            self._goals += 1

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._goals -= 1
            if not self._goals and self._waiting:
                self._cond.notify_all()     # only a commit waits for the goals to end

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not self._committing and not self._goals)
            except BaseException:
                self._waiting -= 1
                self._cond.notify_all()     # goals held back for this commit go on
                raise
            self._waiting -= 1
            self._committing = True
        try:
            yield
        finally:
            with self._cond:
                self._committing = False
                self._cond.notify_all()


class KnowledgeBase:
    """One engine's knowledge base. Thread-safe; loads are serialised."""

    def __init__(self, limits: Limits | None = None) -> None:
        self._prolog = PrologKnowledgeBase()
        self.module = self._prolog.module
        self._load_lock = threading.Lock()
        self._gate = _Gate()
        self._limits = limits or Limits()
        self._iterators: set[int] = set()
        self._iterators_lock = threading.Lock()
        # ids of iterators dropped without close(); their finalizers only append here
        # (a finalizer may run on any thread at any moment), the next call closes them
        self._abandoned: collections.deque[int] = collections.deque()
        self._closed = False
        self.journal: KnowledgeJournal | None = None

    @property
    def limits(self) -> Limits:
        """The :class:`Limits` of every call; assign a new one to change them."""
        return self._limits

    @limits.setter
    def limits(self, limits: Limits) -> None:
        if not isinstance(limits, Limits):
            raise KnowledgeBaseError(f"limits must be a Limits, got {type(limits).__name__}")
        self._limits = limits

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
            self._check_open()
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
                        with self._gate.exclusive():
                            count = self._prolog.load_commit(key, self._limits._prolog())
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
        self._check_open()
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

    def _goal(self, goal: object, bindings: dict[str, object],
              timeout: object) -> tuple[str, list[tuple[str, object]], float]:
        """Check a call's arguments before anything runs."""
        self._check_open()
        if not isinstance(goal, str):
            raise KnowledgeBaseError(f"goal must be a str, got {type(goal).__name__}")
        seconds = self._limits.timeout if timeout is None else _check_timeout(timeout)
        inputs = []
        for name, value in bindings.items():
            if not _VARIABLE.match(name):
                raise KnowledgeBaseError(f"binding {name!r} is not a Prolog variable name")
            _check_value(value, f"binding {name}")
            inputs.append((name, value))
        self._reclaim()
        return goal, inputs, seconds

    def prolog(self, goal: str, *, limit: int | None = None, timeout: float | None = None,
               **bindings: object) -> list[dict[str, Any]]:
        """All solutions of ``goal`` (at most ``limit``), each a dict of the goal's named
        variables (except inputs and names starting with ``_``) to plain values.

        Without ``limit``, a goal with more than ``limits.solutions`` solutions is an
        error; ``timeout`` (seconds) replaces ``limits.timeout`` for this call."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                                  or limit < 1):
            raise KnowledgeBaseError(f"limit must be a positive int, got {limit!r}")
        text, inputs, seconds = self._goal(goal, bindings, timeout)
        limits = self._limits
        with self._gate.shared():
            self._check_open()
            if limit is None:
                return self._prolog.query(text, inputs, limits._prolog(seconds),
                                          limits.solutions, True)
            return self._prolog.query(text, inputs, limits._prolog(seconds), limit, False)

    def prolog_once(self, goal: str, *, timeout: float | None = None,
                    **bindings: object) -> dict[str, Any] | None:
        """The first solution of ``goal`` as a dict, or None if it has none."""
        solutions = self.prolog(goal, limit=1, timeout=timeout, **bindings)
        return solutions[0] if solutions else None

    def prolog_iter(self, goal: str, *, batch: int = 1, timeout: float | None = None,
                    **bindings: object) -> Solutions:
        """The solutions of ``goal``, computed as they are asked for (see
        :class:`Solutions`). ``batch`` solutions are computed per step; ``timeout``
        bounds each step."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise KnowledgeBaseError(f"batch must be a positive int, got {batch!r}")
        text, inputs, seconds = self._goal(goal, bindings, timeout)
        with self._iterators_lock:
            if len(self._iterators) >= self._limits.iterators:
                raise KnowledgeBaseError(
                    f"{len(self._iterators)} iterators are open, the limit is "
                    f"{self._limits.iterators}: close() them (or use `with`)")
            with self._gate.shared():
                self._check_open()
                iterator = self._prolog.iter_open(text, inputs, self._limits._prolog(seconds))
            self._iterators.add(iterator)
        return Solutions(self, iterator, batch, seconds)

    def _next(self, iterator: int, batch: int,
              timeout: float) -> tuple[list[dict[str, Any]], bool | str]:
        self._reclaim()
        with self._gate.shared():
            self._check_open()
            try:
                solutions, done = self._prolog.iter_next(iterator, batch, timeout,
                                                         self._limits.reply_bytes)
            except KnowledgeBaseError:
                self._forget(iterator)  # an error closed it
                raise
        if done is not False:
            self._forget(iterator)
        return solutions, done

    def _close_iterator(self, iterator: int) -> None:
        if not self._closed:
            self._prolog.iter_close(iterator)
        self._forget(iterator)

    def _forget(self, iterator: int) -> None:
        with self._iterators_lock:
            self._iterators.discard(iterator)

    def _abandon(self, iterator: int) -> None:
        """A finalizer's: remember an iterator dropped without close()."""
        self._abandoned.append(iterator)

    def _reclaim(self) -> None:
        """Close the iterators dropped without close() since the last call."""
        while self._abandoned:
            try:
                iterator = self._abandoned.popleft()
            except IndexError:
                return
            if not self._closed:
                self._close_iterator(iterator)

    @property
    def open_iterators(self) -> int:
        """How many :class:`Solutions` iterators hold a Prolog engine now."""
        self._reclaim()
        with self._iterators_lock:
            return len(self._iterators)

    def close(self) -> None:
        """Drop every fact and rule and end every iterator (the engine is closing).
        Waits for the goals running now (each bounded by its time limit)."""
        with self._load_lock, self._gate.exclusive():
            if self._closed:
                return
            self._closed = True
            self._prolog.destroy()
            with self._iterators_lock:
                self._iterators.clear()
            self._abandoned.clear()


class Solutions(Iterator[dict[str, Any]]):
    """The solutions of a goal, one step at a time (``KnowledgeBase.prolog_iter``).

    An iterator and a context manager: ``with engine.prolog_iter(goal) as it: for s in
    it: ...``. Each step computes the next ``batch`` solutions within the time limit;
    between steps the goal's state waits in a Prolog engine of its own, which holds no
    lock, so loads and other goals go on meanwhile (a goal continued after new rules
    were loaded is checked again first). The iterator ends (and frees its engine) when
    the goal has no more solutions, on an error, on ``close()``, when the knowledge
    base closes, or after it is garbage collected. Any thread may step it, one at a
    time.
    """

    def __init__(self, kb: KnowledgeBase, iterator: int, batch: int, timeout: float) -> None:
        self._kb = kb
        self._id = iterator
        self._batch = batch
        self._timeout = timeout
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._done = False
        self._error: str | None = None
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, kb._abandon, iterator)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> dict[str, Any]:
        with self._lock:
            if not self._buffer and not self._done:
                try:
                    solutions, done = self._kb._next(self._id, self._batch, self._timeout)
                except BaseException:
                    self._end()
                    raise
                self._buffer.extend(solutions)
                if done is not False:
                    self._end()
                    if isinstance(done, str):   # raised once the solutions before it are out
                        self._error = done
            if self._buffer:
                return self._buffer.popleft()
            if self._error is not None:
                error, self._error = self._error, None
                raise KnowledgeBaseError(error)
            raise StopIteration

    def _end(self) -> None:
        self._done = True
        self._finalizer.detach()

    def close(self) -> None:
        """Stop: free the goal's engine now (idempotent)."""
        with self._lock:
            self._buffer.clear()
            self._error = None
            if not self._done:
                self._end()
                self._kb._close_iterator(self._id)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Solutions {'done' if self._done else 'open'}>"


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
