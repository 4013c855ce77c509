"""Running one crew through the process backend and the runner's own supervision, with a real
event store: what the runner makes of a runtime's output, without a whole platform."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import crewyard_runtime
from crewyard.core.events import Event, Payload
from crewyard.eventstore import EventStore
from crewyard.runner.backends import Limits, ProcessBackend, RunSpec
from crewyard.runner.execution import Budget, Emitter, decide_outcome, supervise
from crewyard.runner.keepalive import Keepalives
from crewyard.runner.liveness import Liveness

REAL_RUNTIME = Path(crewyard_runtime.__file__).resolve().parents[1]


@dataclass
class Ran:
    payload: Payload
    events: list[Event]

    @property
    def logs(self) -> list[str]:
        return [str(getattr(e.data, "message", "")) for e in self.events if e.type == "log"]


RunCrew = Callable[..., Awaitable[Ran]]


@pytest.fixture
def run_crew(store: EventStore, tmp_path: Path) -> RunCrew:
    async def run(
        source: str = "",
        *,
        runtime_dir: Path = REAL_RUNTIME,
        budget: Budget | None = None,
        secrets: list[str] | None = None,
        env: dict[str, str] | None = None,
        input: dict[str, Any] | None = None,
        timeout_s: float = 60,
        lease_s: float | None = None,
    ) -> Ran:
        """``lease_s``: the run is held under a lease of that length (and kept alive)."""
        run_id = f"run_{uuid.uuid4().hex[:12]}"
        source_dir = tmp_path / run_id / "src"
        source_dir.mkdir(parents=True)
        (source_dir / "crew.py").write_text(textwrap.dedent(source))
        budget = budget or Budget()
        spec = RunSpec(
            run_id=run_id,
            project="tests",
            deployment_id="dep_runner",
            runner_id="test-runner",
            framework="python",
            entrypoint="crew:run",
            input=input or {},
            env=env or {},
            source_dir=source_dir,
            runtime_dir=runtime_dir,
            venv_dir=Path(sys.prefix),
            work_dir=tmp_path / run_id,
            artifacts_dir=tmp_path / run_id / "artifacts",
            limits=Limits(max_output_bytes=budget.max_output),
        )

        async def beat() -> None:
            return None

        emitter = Emitter(store, "tests", run_id, secrets or [])
        keepalives, beating = None, None
        try:
            if lease_s is not None:
                # As the runner does, the run is claimed before its crew starts; and the beat's
                # first renewal (at once) is over before it starts too, so that the keepalive sent
                # when the runtime says hello is its only one until the lease's next renewal.
                liveness = Liveness(store, "test-runner", lease_s, bucket=f"LEASES_{uuid.uuid4().hex[:8]}")
                await liveness.claim(run_id, 1)
                # Created first, it runs first: it waits on the write the beat then makes.
                renewed = asyncio.create_task(liveness.renewal())
                beating = asyncio.create_task(liveness.beat())
                await asyncio.wait_for(renewed, 30)
                keepalives = Keepalives(liveness)
            handle = await ProcessBackend().start(spec)
            started = time.monotonic()
            try:
                outcome, status, timed_out, _ = await supervise(
                    handle,
                    emitter,
                    timeout_s=timeout_s,
                    cancel=asyncio.Event(),
                    grace_s=30,
                    heartbeat=beat,
                    heartbeat_every=5,
                    budget=budget,
                    keepalives=keepalives,
                )
            finally:
                await handle.remove()
        finally:
            if beating is not None:
                beating.cancel()
        await emitter.flush()
        payload = decide_outcome(
            outcome=outcome,
            status=status,
            canceled=None,
            timed_out=timeout_s if timed_out else None,
            started=started,
            limits=spec.limits,
        )
        return Ran(payload=payload, events=[r.event for r in await store.load("tests", "run", run_id)])

    return run
