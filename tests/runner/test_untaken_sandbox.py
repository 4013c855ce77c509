"""A warm sandbox taken from its pool for a run goes back to it when the run's start fails before
the sandbox was given the run (a store outage, a refusal): it stayed outside every pool, alive
until the runner ended, past the idle timeout and the pools' memory budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crewyard.core import run_state as rs
from crewyard.core.deployment_state import READY
from crewyard.eventstore import StoreUnavailable
from crewyard.runner import executor
from crewyard.runner.executor import Executor

CONFIG = {"entrypoint": "crew:run"}


class _Sandbox:
    taken = False


class _Pools:
    def __init__(self) -> None:
        self.sandbox, self.given_back = _Sandbox(), False

    def take(self, *_: Any) -> _Sandbox:
        return self.sandbox

    def can_fork(self, *_: Any) -> bool:
        return False

    def give_back(self, _key: Any, sandbox: _Sandbox) -> None:
        assert sandbox is self.sandbox
        self.given_back = True


class _Quiet:
    """Whatever the executor asks of the store, the lease and the specs before the run starts."""

    name, isolated = "bwrap", True

    async def load(self, *_: Any, **__: Any) -> list[Any]:
        return []

    async def append(self, *_: Any, **__: Any) -> int:
        return 7

    async def claim(self, *_: Any) -> None:
        return None

    async def release(self, *_: Any) -> None:
        return None

    async def environment(self, *_: Any) -> dict[str, str]:
        return {}

    def limits(self, _: Any) -> dict[str, Any]:
        return {}


class _Item:
    deliveries = 1

    async def in_progress(self) -> None:
        return None


async def _no_limits(*_: Any, **__: Any) -> dict[str, int]:
    return {}


async def test_a_sandbox_whose_run_failed_to_start_goes_back_to_its_pool(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ready = type("Dep", (), {"status": READY, "config": CONFIG})()
    monkeypatch.setattr(executor, "fold_deployment", lambda *_: ready)
    monkeypatch.setattr(executor, "run_limits", _no_limits)
    monkeypatch.setattr(executor.specs, "fingerprint", lambda *_: "fp")
    quiet, pools = _Quiet(), _Pools()
    ex = object.__new__(Executor)
    ex.store = ex.liveness = ex.specs = ex.backend = quiet  # type: ignore[assignment]
    ex.pools, ex.active, ex.work_dir, ex.runner_id = pools, {}, tmp_path, "runner_1"  # type: ignore[assignment]

    async def session_store_away(*_: Any) -> None:
        raise StoreUnavailable("the broker went away while the run's session was read")

    monkeypatch.setattr(ex, "_run_started", session_store_away)
    state = rs.RunState(run_id="run_1", project="p", status=rs.PENDING, deployment_id="dep_1")
    with pytest.raises(StoreUnavailable):
        await ex.execute(_Item(), state)  # type: ignore[arg-type]
    assert pools.given_back
