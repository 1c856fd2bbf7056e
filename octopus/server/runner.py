"""The threads that run the server's engine calls, so that the event loop never parses a
query or waits for Prolog (:class:`EngineRunner`).

Why not ``loop.run_in_executor``: a round trip through a ``ThreadPoolExecutor`` and
asyncio futures costs ~70 µs here, more than the engine call it carries; and a pool
wakes a thread per call, so under load several threads fight the event loop for the
GIL, which janus releases and takes back at every Prolog call (a ``set`` took 18 µs
alone and 114 µs next to a busy Python thread). This runner:

* hands a call over with a deque append and a semaphore, and hands results back with
  a deque append and one loop wake-up for all the results ready by then;
* keeps one thread awake while calls are short: it takes queued calls one after the
  other. Another thread is woken only when every awake one has been on its current
  call for more than ``stall`` seconds (a long parse, a slow Prolog scan), so a slow
  request delays the others by about ``stall`` at most;
* *settles* once per loop iteration that made calls: the loop thread waits (without
  the GIL) while the threads make progress on the calls it made, then delivers their
  results at once. Short calls thus run as they would inline — nobody competes for
  the GIL at their Prolog calls (janus releases and retakes it at each one: a ``set``
  next to a busy thread cost 2-5 times its CPU), and their replies leave in the same
  iteration — while the loop stops waiting as soon as every awake thread has been on
  one call for more than ``stall`` (and at the latest after ``handoff`` seconds).

* *commits in groups* (with ``durability``: a durable engine under ``fsync=always``):
  a call's writes do not wait for their fsync on the thread that made them. The
  thread hands the result to one *committer* thread and takes the next call; the
  committer waits for one fsync covering every write handed to it so far, then
  delivers all those results at once. While it waits, the threads go on applying the
  writes that arrive meanwhile, and the next fsync covers them all (group commit, as
  PostgreSQL's and MySQL's log writers do): a result that needs durability is
  delivered only once an fsync covers it, a result that does not (a read) is not held
  back by another call's fsync.

It is also a :class:`concurrent.futures.Executor` (``submit``), so
:class:`octopus.aio.AsyncSession` shares the same threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, Protocol, TypeVar

__all__ = ["Durability", "EngineRunner"]

log = logging.getLogger("octopus.server")

T = TypeVar("T")
A = TypeVar("A")
Done = Callable[[Any, BaseException | None], None]
Job = tuple[Callable[[Any], Any], Any, Done | None]


class Durability(Protocol):
    """What the runner needs to commit writes in groups (:class:`octopus.core.Core`)."""

    def defer_acknowledgements(self) -> None:
        """On this thread, writes stop waiting for their fsync; their ticket is kept."""

    def end_deferral(self) -> int:
        """Stop deferring on this thread; the ticket of the writes since (0: none)."""

    def acknowledge(self, ticket: int) -> None:
        """Wait until the writes up to ``ticket`` are durable (may raise)."""


class _Worker:
    __slots__ = ("running", "since", "thread", "wake")

    def __init__(self) -> None:
        # A raw lock as a one-shot signal (threading.Semaphore and Condition are Python
        # code around several locks): held while the thread sleeps on it, released once
        # by whoever wakes it.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.running = False                  # on a call now
        self.since = 0.0                      # when it woke or began its current call
        self.thread: threading.Thread | None = None


class EngineRunner(Executor):
    """Up to ``workers`` threads that run blocking calls for one event loop (made on
    the loop's thread).

    :meth:`call` (from the loop thread) runs ``func(arg)`` on a thread and then
    ``on_done(result, error)`` on the loop. Calls start in the order they were made but
    may finish in any order; a caller that needs order waits for one call before
    making the next (a connection has at most one call outstanding).

    With ``durability``, a call whose writes deferred their acknowledgement is
    delivered once the committer thread has acknowledged them (see the module
    docstring); ``error`` is then the acknowledgement's failure if the call itself
    raised nothing (``result`` is still the call's result).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, workers: int, *,
                 stall: float = 0.002, handoff: float = 0.05,
                 name: str = "octopus-serve", durability: Durability | None = None) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self.stall = stall
        self.handoff = handoff
        self._jobs: deque[Job] = deque()
        self._done: deque[tuple[Done, Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._gate = threading.Lock()         # the loop sleeps on it in _settle ...
        self._gate.acquire()
        self._gate_armed = False              # ... and a thread releases it once
        self._idle: list[_Worker] = []        # asleep on their semaphore
        self._awake: list[_Worker] = []       # taking calls
        self._settle_scheduled = False
        self._settle_handle: asyncio.Handle | None = None
        self._settling = False                # the loop waits in _settle
        self._wake_scheduled = False          # _deliver is scheduled on the loop
        self._stall_check: asyncio.TimerHandle | None = None
        self._closed = False
        self.calls = 0
        self.handoffs = 0                     # loop iterations that handed calls over
        self.loop_wakeups = 0                 # results delivered by a loop wake-up
        self.extra_wakes = 0                  # threads woken because the awake ones stalled
        self.commits = 0                      # acknowledgements waited for by the committer
        self.committed_calls = 0              # calls they delivered
        self._durability = durability
        # Results waiting for the committer: at most one per call outstanding (a
        # connection has one at a time), so bounded by the connections.
        self._held: list[tuple[Done, Any, BaseException | None]] = []
        self._held_ticket = 0
        self._committer_wake = threading.Lock()   # like a _Worker's wake
        self._committer_wake.acquire()
        self._committer_asleep = True
        self._threads: list[threading.Thread] = []
        self._local = threading.local()       # .worker: the _Worker of this thread
        self._live = max(1, workers)          # worker threads not yet returned
        for i in range(max(1, workers)):
            w = _Worker()
            w.thread = threading.Thread(target=self._work, args=(w,), name=f"{name}-{i}")
            self._idle.append(w)
            self._threads.append(w.thread)
            w.thread.start()
        self._committer: threading.Thread | None = None
        if durability is not None:
            self._committer = threading.Thread(target=self._commit, args=(durability,),
                                               name=f"{name}-commit")
            self._committer.start()
        # Stop the threads when the interpreter exits, before it waits for non-daemon
        # threads (a server that was never closed must not hang the exit). This is the
        # hook concurrent.futures uses; atexit would run too late.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):     # already shutting down
                register(self._at_exit)

    # --- from the loop ---------------------------------------------------------------------

    def call(self, func: Callable[[A], T], arg: A, on_done: Done) -> None:
        """Run ``func(arg)`` on a worker thread, then ``on_done(result, error)`` on the
        loop (``error`` is the exception ``func`` raised, else None)."""
        self._put((func, arg, on_done))

    def _put(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the engine runner has shut down")
            self._jobs.append(job)
            self.calls += 1
            if not self._awake:
                self._wake_one()
            elif self._stall_check is None:
                self._stall_check = self._loop.call_later(self.stall, self._check_stall)
        if not self._settle_scheduled and self.handoff > 0:
            self._settle_scheduled = True
            self._settle_handle = self._loop.call_soon(self._settle)

    def settle_now(self) -> None:
        """Settle at once rather than in the loop's next iteration (the caller has made
        every call of this iteration)."""
        if self._settle_scheduled:
            assert self._settle_handle is not None
            self._settle_handle.cancel()
            self._settle()

    def _progressing(self, now: float) -> bool:
        """Short calls are under way (lock held): some awake thread is on a call or
        about to take a queued one, and none has been on its call for more than
        ``stall`` — a long call (a parse, a Prolog scan, a replica's write waiting for
        etcd) is not worth waiting for; the stall check wakes another thread for it."""
        stall = self.stall
        running = False
        for w in self._awake:
            if w.running:
                if now - w.since > stall:
                    return False
                running = True
        if self._jobs:
            return bool(self._awake)
        return running

    def _settle(self) -> None:
        """Wait (without the GIL) while the threads make progress on the calls made so
        far — at most ``handoff`` seconds — then deliver the results (see the module
        docstring)."""
        self._settle_scheduled = False
        self.handoffs += 1
        deadline = time.monotonic() + self.handoff
        lock = self._lock
        gate = self._gate
        gate.acquire(blocking=False)          # a stale release of a past settle
        with lock:
            self._settling = True
        try:
            while True:
                with lock:
                    now = time.monotonic()
                    if now >= deadline or not self._progressing(now):
                        break
                    self._gate_armed = True
                gate.acquire(timeout=min(deadline - now, self.stall))
                with lock:
                    self._gate_armed = False
        finally:
            with lock:
                self._settling = False
                self._gate_armed = False
        if self._done:
            self._deliver()

    def _wake_one(self) -> bool:
        """Wake an idle thread (lock held); False if none is idle."""
        if not self._idle:
            return False
        w = self._idle.pop()
        w.since = time.monotonic()
        self._awake.append(w)
        w.wake.release()
        return True

    def _check_stall(self) -> None:
        self._stall_check = None
        with self._lock:
            if not self._jobs or self._closed:
                return
            now = time.monotonic()
            if all(now - w.since > self.stall for w in self._awake) and self._wake_one():
                self.extra_wakes += 1
            self._stall_check = self._loop.call_later(self.stall, self._check_stall)

    def _deliver(self) -> None:
        self._wake_scheduled = False
        done = self._done
        while done:
            on_done, result, error = done.popleft()
            try:
                on_done(result, error)
            except Exception:
                log.exception("delivering the result of an engine call")

    def _woken(self) -> None:
        self.loop_wakeups += 1
        self._deliver()

    # --- concurrent.futures.Executor ---------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def run(cancel: bool) -> None:
            if cancel:
                future.cancel()
                return
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                future.set_exception(e)
            else:
                future.set_result(result)

        if threading.get_ident() == self._loop_thread:
            self._put((run, False, None))
            return future
        with self._lock:                      # from another thread: the loop's timers
            if self._closed:                  # are not ours to arm
                raise RuntimeError("the engine runner has shut down")
            self._jobs.append((run, False, None))
            now = time.monotonic()
            if not self._awake or all(now - w.since > self.stall for w in self._awake):
                self._wake_one()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the queued calls have run (or are dropped, with
        ``cancel_futures``: a ``submit`` future is cancelled, a ``call`` forgotten)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dropped = list(self._jobs) if cancel_futures else []
            if cancel_futures:
                self._jobs.clear()
            workers = list(self._idle)        # the awake ones see _closed when idle
            self._idle.clear()
        if self._stall_check is not None:
            self._stall_check.cancel()
        for func, _, on_done in dropped:
            if on_done is None:
                func(True)
        for w in workers:
            w.wake.release()
        self._wake_committer()
        if wait:
            for thread in self._threads:
                thread.join()
            if self._committer is not None:
                self._committer.join()

    def _at_exit(self) -> None:
        self.shutdown(wait=False, cancel_futures=True)

    # --- the threads -------------------------------------------------------------------------

    def progress(self) -> None:
        """On a worker thread: the call it runs has made progress — one step of a long
        call made of many short ones (a :class:`~octopus.server.server.Round`), which
        must not count as one long call (another thread would be woken for nothing,
        and the loop would stop waiting for the results)."""
        me = getattr(self._local, "worker", None)
        if me is not None:
            me.since = time.monotonic()

    def _work(self, me: _Worker) -> None:
        self._local.worker = me
        try:
            self._take_calls(me)
        finally:
            with self._lock:
                self._live -= 1
            self._wake_committer()              # it ends once the last worker has

    def _take_calls(self, me: _Worker) -> None:
        jobs = self._jobs
        done = self._done
        lock = self._lock
        durability = self._durability
        while True:
            me.wake.acquire()
            while True:
                with lock:
                    if not jobs:
                        if self._closed:
                            return
                        self._awake.remove(me)
                        self._idle.append(me)
                        break
                    func, arg, on_done = jobs.popleft()
                    me.running = True
                    me.since = time.monotonic()
                delivered = False
                if on_done is None:
                    func(arg)
                elif durability is None:
                    try:
                        result, error = func(arg), None
                    except BaseException as e:   # a SystemExit must not end the thread
                        result, error = None, e
                    done.append((on_done, result, error))
                    delivered = True
                else:
                    durability.defer_acknowledgements()
                    try:
                        result, error = func(arg), None
                    except BaseException as e:
                        result, error = None, e
                    finally:
                        ticket = durability.end_deferral()
                    if ticket:
                        self._hold(on_done, result, error, ticket)
                    else:
                        done.append((on_done, result, error))
                        delivered = True
                with lock:
                    me.running = False
                    settling = self._settling
                    if self._gate_armed and not jobs:   # only when the loop may stop
                        self._gate_armed = False        # waiting: each wake-up costs
                        self._gate.release()            # it the GIL
                if delivered and not settling:
                    self._wake_loop()
            if self._closed:
                return

    def _wake_loop(self) -> None:
        """Have the loop deliver what is done, once for everything ready by then (the
        caller saw the loop not settling: else it delivers when its wait ends).
        _deliver clears the flag before it empties the deque, and a result is
        appended before the flag is read."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):    # the loop has closed
                self._loop.call_soon_threadsafe(self._woken)

    # --- the committer -------------------------------------------------------------------------

    def _hold(self, on_done: Done, result: Any, error: BaseException | None,
              ticket: int) -> None:
        """Hand a result to the committer: delivered once ``ticket`` is acknowledged."""
        with self._lock:
            self._held.append((on_done, result, error))
            if ticket > self._held_ticket:
                self._held_ticket = ticket
            if self._committer_asleep:
                self._committer_asleep = False
                self._committer_wake.release()

    def _wake_committer(self) -> None:
        with self._lock:
            if self._committer_asleep:
                self._committer_asleep = False
                self._committer_wake.release()

    def _commit(self, durability: Durability) -> None:
        """The committer thread: acknowledge everything held so far with one wait,
        deliver it, repeat; whatever was held during the wait goes in the next round."""
        lock = self._lock
        done = self._done
        while True:
            self._committer_wake.acquire()
            while True:
                with lock:
                    if not self._held:
                        if self._closed and self._live == 0:
                            return
                        self._committer_asleep = True
                        break
                    held, self._held = self._held, []
                    ticket, self._held_ticket = self._held_ticket, 0
                failure: BaseException | None = None
                try:
                    durability.acknowledge(ticket)
                except BaseException as e:      # PersistenceError: the fsync failed
                    failure = e
                self.commits += 1
                self.committed_calls += len(held)
                for on_done, result, error in held:
                    done.append((on_done, result, error if error is not None else failure))
                with lock:
                    settling = self._settling
                if not settling:
                    self._wake_loop()
