"""The file operations of a durable engine, in one replaceable object.

Every write, fsync, truncation, rename and unlink of the journal and snapshots goes
through :data:`ops`; the fault tests (tests/durable/test_faults.py) swap in a
:class:`FileOps` subclass that fails on demand (ENOSPC, EIO) where no small file
system can be mounted. Nothing else is different: the real files are written.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

__all__ = ["DirectoryLock", "FileOps", "ops"]


class FileOps:
    """Thin wrappers over ``os``: whole writes, data syncs, directory syncs."""

    def open_append(self, path: Path, *, create: bool) -> int:
        # O_APPEND: after a failed write is cut off with ftruncate, the next write goes
        # to the new end, not to the old file position (which would leave a hole).
        flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT | os.O_EXCL if create
                                                            else 0)
        return os.open(path, flags, 0o644)

    def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data`` (a short write is retried; an error raises)."""
        n = os.write(fd, data)
        if n == len(data):
            return
        view = memoryview(data)[n:]
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]

    def pwrite(self, fd: int, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]
            offset += n

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: Path, dst: Path) -> None:
        os.rename(src, dst)

    def unlink(self, path: Path) -> None:
        os.unlink(path)

    def sync_directory(self, directory: Path) -> None:
        """Make a file's creation, rename or removal in ``directory`` durable."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: The file operations in use (replaced only by fault-injection tests).
ops = FileOps()


class DirectoryLock:
    """An exclusive ``flock`` on ``DIR/LOCK`` held while an engine has the directory
    open: a second engine, in this process or another, is refused at once. The kernel
    drops the lock when its holder dies, so a killed engine never leaves a stale lock.
    A directory that cannot be written (read-only) is locked through the directory
    itself."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self.fd: int | None = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass                        # read-only: the lock is what matters, not the pid

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)                # closing the descriptor drops the flock
