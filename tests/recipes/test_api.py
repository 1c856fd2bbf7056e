"""The recipes' public surface: exports, factories on sessions, and the size rule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import octopus
import octopus.recipes

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["barrier", "election", "lock", "names", "rwlock", "semaphore"]


def test_exports_are_pinned() -> None:
    assert octopus.recipes.__all__ == [
        "Barrier", "Election", "Lock", "NameService", "ReadLock", "ReadWriteLock",
        "Semaphore", "Store", "WriteLock"]
    for name in ("Barrier", "Election", "Lock", "NameService", "ReadWriteLock", "Semaphore"):
        assert name in octopus.__all__
        assert getattr(octopus, name) is getattr(octopus.recipes, name)


def test_factories_exist_on_engine_and_sessions(engine: octopus.Engine) -> None:
    with engine.session() as s:
        for store in (engine, s):
            assert isinstance(store.lock("a"), octopus.Lock)
            assert isinstance(store.rwlock("a"), octopus.ReadWriteLock)
            assert isinstance(store.barrier("a", 2), octopus.Barrier)
            assert isinstance(store.semaphore("a", 2), octopus.Semaphore)
            assert isinstance(store.election("a"), octopus.Election)
            assert store.names.store is store


@pytest.mark.parametrize("module", MODULES)
def test_each_recipe_is_small_and_states_its_failure_modes(module: str) -> None:
    spec = importlib.util.spec_from_file_location("bench_loc", ROOT / "bench" / "loc.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        loc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loc)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    path = ROOT / "octopus" / "recipes" / f"{module}.py"
    code, _docs, _total = loc.count(path)
    assert code < loc.LIMIT
    doc = importlib.import_module(f"octopus.recipes.{module}").__doc__
    assert doc and "Failure modes" in doc
