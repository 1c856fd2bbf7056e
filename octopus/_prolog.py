"""The single boundary between Python and SWI-Prolog (janus-swi).

Nothing else imports ``janus_swi``. This module

* finds the SWI-Prolog home before janus is imported (importing janus with an older
  ``swipl`` first on PATH, or with no PATH, aborts the process), and keeps the user's
  ``init.pl`` from being loaded into the engine;
* loads ``prolog/*.pl`` once per process;
* attaches a Prolog engine to every Python thread that calls Prolog (a thread without
  one crashes the process) and detaches it when the thread ends;
* calls only fixed predicates with data as arguments (never goal text built from user
  input) and turns Prolog errors into Octopus exceptions.

Which predicates are called, with what, and what their replies mean is the business of
:mod:`octopus.adapter`; this module only runs the calls.

Theory of operation:

1. ``runtime()`` returns the process-wide :class:`PrologRuntime`, created on first use
   under a lock.
2. ``PrologRuntime.call(module, predicate, *args)`` runs ``module:predicate(*args, Reply)``
   and returns Reply converted to Python. Octopus' predicates raise standard
   ``error(Formal, Context)`` terms (prolog/errors.pl); :meth:`call` asks
   ``describe_error/2`` what one means and raises :class:`~octopus.errors.QueryError`
   (the caller's input cannot be used), :class:`~octopus.errors.KnowledgeBaseError`
   (a knowledge-base load or goal failed) or :class:`~octopus.errors.OctopusError`
   (an error Octopus did not expect, with Prolog's message).
3. The GIL is released while Prolog runs. Callers serialise store access themselves.
4. A thread's Prolog engine is detached by the thread itself when it ends; never by
   another thread, and not while the interpreter is shutting down (detaching then,
   from the main thread, corrupted the heap: ``free(): invalid pointer`` at exit).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from octopus.errors import KnowledgeBaseError, OctopusError, QueryError, SetupError

__all__ = ["PrologRuntime", "find_swipl_home", "runtime"]

MIN_PLVERSION = 90112


def _dump_runtime_variables(swipl: str) -> dict[str, str]:
    try:
        out = subprocess.run([swipl, "--dump-runtime-variables"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    values: dict[str, str] = {}
    for line in out.splitlines():
        name, _, rest = line.partition("=")
        if rest.startswith('"') and rest.endswith('";'):
            values[name] = rest[1:-2]
    return values


def _home_if_usable(swipl: str | None) -> str | None:
    if not swipl:
        return None
    variables = _dump_runtime_variables(swipl)
    try:
        if int(variables.get("PLVERSION", "0")) >= MIN_PLVERSION:
            return variables.get("PLBASE")
    except ValueError:
        pass
    return None


def _recorded_home() -> str | None:
    """The home scripts/setup.sh recorded for this virtual environment."""
    env_file = Path(sys.prefix) / "octopus-swipl.env"
    with contextlib.suppress(OSError):
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "SWI_HOME_DIR" and Path(value, "boot.prc").exists():
                return value
    return None


def find_swipl_home() -> str:
    """The SWI-Prolog home directory (SWI_HOME_DIR) janus should run with.

    In order: ``$SWI_HOME_DIR``; the home recorded by scripts/setup.sh in the virtual
    environment; ``$SWIPL``; the newest build in ``~/.cache/octopus``; ``swipl`` on PATH
    if new enough.
    """
    explicit = os.environ.get("SWI_HOME_DIR")
    if explicit:
        return explicit
    home = _recorded_home() or _home_if_usable(os.environ.get("SWIPL"))
    if home:
        return home
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "octopus"
    for candidate in sorted(cache.glob("swipl-*/bin/swipl"), reverse=True):
        home = _home_if_usable(str(candidate))
        if home:
            return home
    home = _home_if_usable(shutil.which("swipl"))
    if home:
        return home
    raise SetupError(
        "no SWI-Prolog >= 9.1.12 found; run `make test` (or scripts/setup.sh) to "
        "provision one, or set SWIPL=/path/to/swipl")


def _import_janus(home: str) -> Any:
    """Import janus_swi with SWI_HOME_DIR set and without the user's init file."""
    os.environ["SWI_HOME_DIR"] = home
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_CONFIG_HOME", "APPDATA")}
    with tempfile.TemporaryDirectory(prefix="octopus-noinit-") as empty:
        # SWI-Prolog looks for init.pl under these; point them at an empty directory
        # while the embedded engine initialises, so user init files never run in it.
        os.environ["HOME"] = empty
        os.environ["XDG_CONFIG_HOME"] = empty
        os.environ.pop("APPDATA", None)
        try:
            import janus_swi
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return janus_swi


def _prolog_dir() -> Path:
    """The directory of the .pl files: ``octopus/prolog/`` in an installed package,
    ``prolog/`` beside ``octopus/`` in a source checkout. A real directory either way:
    Prolog consults files by path (``importlib.resources`` would hand back a
    MultiplexedPath for this namespace directory, whose text is no path)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "prolog", here.parent / "prolog"):
        if (candidate / "store.pl").is_file():
            return candidate
    raise SetupError(f"the Prolog files of octopus are missing (looked for store.pl in "
                     f"{here / 'prolog'} and {here.parent / 'prolog'}); the package is "
                     "incomplete: reinstall it", hint=False)


class _Detacher:
    """Lives in a thread-local slot; when its thread ends, detaches the thread's Prolog
    engine (only from that thread, and not during interpreter shutdown)."""

    __slots__ = ("janus", "thread")

    def __init__(self, janus: Any) -> None:
        self.janus = janus
        self.thread = threading.get_ident()

    def __del__(self) -> None:
        if sys.is_finalizing() or threading.get_ident() != self.thread:
            return
        with contextlib.suppress(Exception):
            self.janus.detach_engine()


class PrologRuntime:
    """The process's embedded SWI-Prolog, with the Octopus modules loaded."""

    def __init__(self) -> None:
        self.home = find_swipl_home()
        try:
            self.janus = _import_janus(self.home)
        except ImportError as e:
            raise SetupError(f"cannot import janus_swi ({e}); run `make test` to set up") from e
        self._apply_once = self.janus.apply_once
        self._local = threading.local()
        self._owner = threading.get_ident()   # this thread has Prolog's main engine
        self.prolog_dir = _prolog_dir()
        for name in ("errors.pl", "regex.pl", "match.pl", "store.pl", "triggers.pl", "skb.pl"):
            self.consult(self.prolog_dir / name)
        self._module_seq = 0
        self._module_lock = threading.Lock()

    # --- threads -------------------------------------------------------------------

    def attach(self) -> None:
        """Give the calling thread a Prolog engine if it has none (idempotent, cheap)."""
        if threading.get_ident() != self._owner and not hasattr(self._local, "engine"):
            self.janus.attach_engine()
            self._local.engine = _Detacher(self.janus)

    # --- calls ---------------------------------------------------------------------

    def consult(self, path: Path) -> None:
        self.attach()
        self.janus.cmd("user", "ensure_loaded", str(path))

    def call(self, module: str, predicate: str, *args: Any) -> Any:
        """Run ``module:predicate(*args, Reply)``; return Reply or raise its error."""
        if threading.get_ident() != self._owner and not hasattr(self._local, "engine"):
            self.attach()
        try:
            return self._apply_once(module, predicate, *args)
        except self.janus.PrologError as e:
            raise self._exception(module, predicate, e) from None

    def _exception(self, module: str, predicate: str, error: Any) -> OctopusError:
        """The Octopus exception for a Prolog error raised by a call."""
        if error.term is None:      # janus refused the call before Prolog ran
            return OctopusError(f"{module}:{predicate}: {error.message}")
        try:
            kind, message = self._apply_once("octopus_errors", "describe_error", error.term)
        except self.janus.PrologError:
            kind, message = "prolog", "an error that could not be described"
        if kind == "query":
            return QueryError(message)
        if kind == "kb":
            return KnowledgeBaseError(message)
        return OctopusError(f"Prolog error in {module}:{predicate}: {message}")

    def new_module(self, prefix: str) -> str:
        """A fresh Prolog module name (from a counter, never from user data)."""
        with self._module_lock:
            self._module_seq += 1
            return f"{prefix}_{os.getpid()}_{self._module_seq}"

    def check(self) -> None:
        """Raise unless Prolog answers and is new enough (used by scripts/setup.sh)."""
        version = self._apply_once("user", "current_prolog_flag", "version")
        if version < MIN_PLVERSION:
            raise SetupError(f"SWI-Prolog {version} is older than 9.1.12")
        print(f"janus_swi ok: SWI-Prolog {version // 10000}.{version // 100 % 100}."
              f"{version % 100} at {self.home}")


_runtime: PrologRuntime | None = None
_runtime_lock = threading.Lock()


def runtime() -> PrologRuntime:
    """The process-wide Prolog runtime, started on first use."""
    global _runtime
    rt = _runtime
    if rt is None:
        with _runtime_lock:
            if _runtime is None:
                _runtime = PrologRuntime()
            rt = _runtime
    return rt
