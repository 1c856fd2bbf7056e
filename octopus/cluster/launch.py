"""Start and stop real clusters on loopback: a 3-member etcd cluster and Octopus servers
over it, each a separate process (for tests, ``octopus cluster-demo`` and
bench/cluster.py).

Nothing here is a stand-in: the members are Debian's ``etcd`` binary (``etcd-server``
package) and the nodes are ``octopus serve --etcd ...``. Ports are picked free on
127.0.0.1 at start; data lives in a temporary directory removed at the end. Processes
can be killed with SIGKILL, stopped (SIGSTOP) and started again, which is what the
failure tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from octopus.errors import SetupError

__all__ = ["EtcdCluster", "OctopusNode", "etcd_binary", "free_ports"]


def etcd_binary() -> str:
    """The path of the ``etcd`` server binary; SetupError if there is none."""
    found = os.environ.get("OCTOPUS_ETCD") or shutil.which("etcd")
    if not found:
        raise SetupError("the etcd server binary was not found: install Debian's etcd-server "
                         "package (apt-get install etcd-server; `make setup` does it as "
                         "root) or set OCTOPUS_ETCD=/path/to/etcd", hint=False)
    return found


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on "
                               f"{port}:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class EtcdCluster:
    """``size`` etcd members on loopback (a context manager)."""

    def __init__(self, size: int = 3, *, directory: str | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.binary = etcd_binary()
        self.size = size
        self._own_dir = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="octopus-etcd-"))
        ports = free_ports(2 * size)
        self.client_ports = ports[:size]
        self.peer_ports = ports[size:]
        self.names = [f"m{i + 1}" for i in range(size)]
        self.extra_args = list(extra_args)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self._token = f"octopus-{os.getpid()}-{time.monotonic_ns()}"

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    @property
    def url(self) -> str:
        """All endpoints, comma-separated (what ``--etcd`` takes)."""
        return ",".join(self.endpoints)

    def _args(self, i: int, state: str) -> list[str]:
        initial = ",".join(f"{n}=http://127.0.0.1:{p}"
                           for n, p in zip(self.names, self.peer_ports, strict=True))
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [self.binary, "--name", self.names[i], "--data-dir", str(self.dir / self.names[i]),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", state,
                "--initial-cluster-token", self._token, "--logger", "zap",
                "--log-level", "warn", *self.extra_args]

    def start_member(self, i: int, state: str = "new") -> None:
        log = self.dir / f"{self.names[i]}.log"
        with open(log, "ab") as out:
            self.procs[i] = subprocess.Popen(self._args(i, state), stdout=out,
                                             stderr=subprocess.STDOUT,
                                             start_new_session=True)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for i in range(self.size):
            self.start_member(i)
        for i in range(self.size):
            _wait_port(self.client_ports[i], timeout, self.procs[i],
                       self.dir / f"{self.names[i]}.log")
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, members: Sequence[int] | None = None) -> None:
        """Wait until the given members (all running ones by default) know a leader."""
        from octopus.cluster.etcd import Etcd

        wanted = [i for i in (members if members is not None else range(self.size))
                  if self.procs[i] is not None]
        deadline = time.monotonic() + timeout
        client = Etcd(self.endpoints, timeout=2.0)
        try:
            while True:
                ok = 0
                for i in wanted:
                    try:
                        st = client.status(i, timeout=1.0)
                        if int(st.get("leader", 0) or 0) and not st.get("errors"):
                            ok += 1
                    except Exception:
                        pass
                if ok == len(wanted):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd members {wanted} have no leader after "
                                       f"{timeout} s")
                time.sleep(0.1)
        finally:
            client.close()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                proc.wait(10)
                self.procs[i] = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start a killed member again with its data (it rejoins the cluster)."""
        self.start_member(i, "existing")
        _wait_port(self.client_ports[i], timeout, self.procs[i],
                   self.dir / f"{self.names[i]}.log")

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                self.procs[i] = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OctopusNode:
    """One ``octopus serve --etcd ...`` process on a loopback port."""

    def __init__(self, etcd: str, *, prefix: str = "/octopus/", lease_ttl: int = 3,
                 log: Path | None = None, port: int | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self.port = port or free_ports(1)[0]
        self._own_log = log is None
        if log is None:
            fd, name = tempfile.mkstemp(prefix="octopus-node-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = log
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> OctopusNode:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        args = [sys.executable, "-m", "octopus", "serve", "--log-level", "info",
                "--port", str(self.port), "--etcd", self.etcd, "--prefix", self.prefix,
                "--lease-ttl", str(self.lease_ttl), "--no-uvloop", *self.extra_args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> OctopusNode:
        """Wait until the node serves."""
        _wait_port(self.port, timeout, self.proc, self.log)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        proc = self.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(20)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                self.proc = None

    def stop(self) -> None:
        """Stop the process (a stopped one is continued first); a log file made here
        is removed."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
            self.kill(signal.SIGTERM)
        if self._own_log:
            with contextlib.suppress(OSError):
                self.log.unlink()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> OctopusNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
