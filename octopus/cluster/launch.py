"""Start and stop real clusters on loopback: a 3-member etcd cluster and Octopus servers
over it, each a separate process (for tests, ``octopus cluster-demo`` and
bench/cluster.py).

Nothing here is a stand-in: the members are Debian's ``etcd`` binary (``etcd-server``
package) and the nodes are ``octopus serve --etcd ...``. Data lives in a temporary
directory removed at the end. Processes can be killed with SIGKILL, stopped (SIGSTOP)
and started again, which is what the failure tests do.

Ports, on a machine where other test runs start servers at the same time: a node binds
port 0 itself and its log says which port it got, so nobody can take the port between
the choice and the bind. etcd takes its ports on the command line, so they are picked
free first; a member that then finds its port taken (another process bound it in
between) exits, and the whole cluster is started again on other ports.
"""

from __future__ import annotations

import contextlib
import os
import re
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


#: How many times a cluster whose member found a port taken is started again.
PORT_ATTEMPTS = 5


def _port_taken(log: Path) -> bool:
    """Whether the process writing ``log`` failed because its port was taken."""
    with contextlib.suppress(OSError):
        return "address already in use" in log.read_text(errors="replace").lower()
    return False


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
        self.client_ports: list[int] = []
        self.peer_ports: list[int] = []
        self._pick_ports()
        self.names = [f"m{i + 1}" for i in range(size)]
        self.extra_args = list(extra_args)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self._token = f"octopus-{os.getpid()}-{time.monotonic_ns()}"

    def _pick_ports(self) -> None:
        ports = free_ports(2 * self.size)
        self.client_ports = ports[:self.size]
        self.peer_ports = ports[self.size:]

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
        for attempt in range(PORT_ATTEMPTS):
            try:
                for i in range(self.size):
                    self.start_member(i)
                for i in range(self.size):
                    _wait_port(self.client_ports[i], timeout, self.procs[i],
                               self.dir / f"{self.names[i]}.log")
                self.wait_healthy(timeout)
                # A member whose port was taken may exit only now, and what answered on
                # its port was then another process.
                time.sleep(0.1)
                if all(p is not None and p.poll() is None for p in self.procs):
                    return self
                failure = "a member exited after start"
            except RuntimeError as e:
                failure = str(e)
            logs = [self.dir / f"{n}.log" for n in self.names]
            taken = any(_port_taken(log) for log in logs)
            self._stop_members()
            if not taken or attempt == PORT_ATTEMPTS - 1:
                if self._own_dir:
                    shutil.rmtree(self.dir, ignore_errors=True)
                raise RuntimeError(f"etcd did not start: {failure}")
            # Another process took a port between the choice and the bind: start over
            # on other ports, with fresh data directories (the cluster was never formed).
            for name in self.names:
                shutil.rmtree(self.dir / name, ignore_errors=True)
            for log in logs:
                with contextlib.suppress(OSError):
                    log.unlink()
            self._token = f"octopus-{os.getpid()}-{time.monotonic_ns()}"
            self._pick_ports()
        raise AssertionError("unreachable")

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
                    proc = self.procs[i]
                    if proc is not None and proc.poll() is not None:
                        raise RuntimeError(f"etcd member {self.names[i]} exited with "
                                           f"{proc.returncode}")
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
        self._stop_members()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_members(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGCONT)
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                self.procs[i] = None

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OctopusNode:
    """One ``octopus serve --etcd ...`` process on a loopback port: ``port``, or else
    one the process picks itself (``--port 0``) and names in its log (see the module)."""

    def __init__(self, etcd: str, *, prefix: str = "/octopus/", lease_ttl: int = 3,
                 log: Path | None = None, port: int | None = None,
                 extra_args: Sequence[str] = (),
                 command: Sequence[str] | None = None) -> None:
        """``command`` runs the ``octopus`` command line (default: this interpreter's
        ``-m octopus``; bench/cluster.py runs an older checkout's so to compare)."""
        self.etcd = etcd
        self.command = list(command) if command is not None else [sys.executable, "-m",
                                                                    "octopus"]
        self.prefix = prefix
        self.lease_ttl = lease_ttl
        self._fixed_port = port
        self._port = port
        self._own_log = log is None
        if log is None:
            fd, name = tempfile.mkstemp(prefix="octopus-node-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = log
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0                  # where this process's lines begin in the log

    @property
    def port(self) -> int:
        """The node's TCP port (known once it is ready)."""
        if self._port is None:
            raise RuntimeError("the node's port is known once it is ready (wait_ready)")
        return self._port

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> OctopusNode:
        self.spawn()
        return self.wait_ready(timeout)

    def spawn(self) -> None:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        self._port = self._fixed_port
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        args = [*self.command, "serve", "--log-level", "info",
                "--port", str(self._fixed_port or 0), "--etcd", self.etcd,
                "--prefix", self.prefix, "--lease-ttl", str(self.lease_ttl), "--no-uvloop",
                *self.extra_args]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> OctopusNode:
        """Wait until the node serves (its own log says so: something else answering on
        its port is not taken for it)."""
        proc = self.proc
        assert proc is not None, "spawn() first"
        # The line the server logs once it listens, with the port it bound (its pid
        # tells it from an earlier process's lines in a shared log).
        ready = re.compile(rb"serving on tcp://127\.0\.0\.1:(\d+) \(octopus [^,]*, pid %d\)"
                           % proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), open(self.log, "rb") as f:
                f.seek(self._log_start)
                found = ready.search(f.read())
                if found:
                    self._port = int(found.group(1))
                    return self
            if proc.poll() is not None:
                tail = self.log_text()[-2000:]
                raise RuntimeError(f"the node exited with {proc.returncode} before serving:"
                                   f"\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node did not serve within {timeout} s")
            time.sleep(0.05)

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
