"""ReadWriteLock: shared readers, exclusive writers, FIFO between them."""

from __future__ import annotations

import threading

from octopus.recipes import Store

from .threads import Threads, eventually


def test_readers_share_and_writers_exclude(store: Store) -> None:
    r1, r2, w = store.rwlock("rw", "r1"), store.rwlock("rw", "r2"), store.rwlock("rw", "w")
    assert r1.read.acquire(blocking=False)
    assert r2.read.acquire(blocking=False)
    assert not w.write.acquire(blocking=False)
    r1.read.release()
    r2.read.release()
    assert w.write.acquire(blocking=False)
    assert not r1.read.acquire(blocking=False)
    w.write.release()
    assert store.get_names("_ { rwlock: 'rw' }") == []


def test_a_waiting_writer_holds_back_later_readers(store: Store) -> None:
    reader, writer, late = (store.rwlock("q", i) for i in ("reader", "writer", "late"))
    assert reader.read.acquire()
    threads = Threads()
    threads.start(writer.write.acquire)
    eventually(lambda: reader.contenders() == ["reader", "writer"], "writer queued")
    assert not late.read.acquire(blocking=False)  # no overtaking a waiting writer
    threads.start(late.read.acquire)
    eventually(lambda: reader.contenders() == ["reader", "writer", "late"], "late queued")
    reader.read.release()
    eventually(lambda: writer.write.held, "writer in")
    assert not late.read.held
    writer.write.release()
    threads.join()
    assert late.read.held
    assert store.get("_ { rwlock: 'q' }")["mode"] == "read"
    late.read.release()


def test_mixed_readers_and_writers_under_load(store: Store) -> None:
    state = {"readers": 0, "writers": 0, "peak_readers": 0}
    guard = threading.Lock()

    def worker(i: int) -> None:
        rw = store.rwlock("load", f"t{i}")
        for k in range(6):
            writing = (i + k) % 3 == 0
            with rw.write if writing else rw.read:
                with guard:
                    state["writers" if writing else "readers"] += 1
                    assert state["writers"] <= 1
                    assert not (state["writers"] and state["readers"])
                    state["peak_readers"] = max(state["peak_readers"], state["readers"])
                store.get_names("_ { rwlock: 'load' }")
                with guard:
                    state["writers" if writing else "readers"] -= 1

    threads = Threads()
    for i in range(6):
        threads.start(worker, i)
    threads.join()
    assert store.get_names("_ { rwlock: 'load' }") == []


def test_tokens_and_session_end(store: Store) -> None:
    s = store.session()
    writer = s.rwlock("tk")
    assert writer.write.acquire()
    reader = store.rwlock("tk")
    threads = Threads()
    threads.start(reader.read.acquire)
    eventually(lambda: len(reader.contenders()) == 2, "reader queued")
    s.close()
    threads.join()
    assert reader.read.token > writer.write.token  # type: ignore[operator]
    reader.read.release()
