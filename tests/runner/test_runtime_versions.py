"""The runner's side of the protocol, through the process backend: it answers requests, and it
refuses a runtime that speaks another version (an image built by an older crewyard) clearly."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import crewyard_runtime
from crewyard.core.events import RunCompleted, RunFailed
from crewyard.eventstore import EventStore
from crewyard.runner.backends import Limits, ProcessBackend, RunSpec
from crewyard.runner.execution import Emitter, decide_outcome, supervise

pytestmark = pytest.mark.timeout(60)
REAL_RUNTIME = Path(crewyard_runtime.__file__).resolve().parents[1]


def _fake_runtime(folder: Path, main: str) -> Path:
    package = folder / "crewyard_runtime"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(textwrap.dedent(main))
    return folder


async def _run(store: EventStore, tmp_path: Path, runtime_dir: Path, source: str = "") -> object:
    source_dir = tmp_path / "src"
    source_dir.mkdir(exist_ok=True)
    (source_dir / "crew.py").write_text(textwrap.dedent(source))
    run_id = f"run_{uuid.uuid4().hex[:12]}"
    spec = RunSpec(
        run_id=run_id,
        project="tests",
        deployment_id="dep_versions",
        runner_id="test-runner",
        framework="python",
        entrypoint="crew:run",
        input={},
        env={},
        source_dir=source_dir,
        runtime_dir=runtime_dir,
        venv_dir=Path(sys.prefix),
        work_dir=tmp_path / run_id,
        artifacts_dir=tmp_path / run_id / "artifacts",
        limits=Limits(),
    )
    handle = await ProcessBackend().start(spec)

    async def beat() -> None:
        return None

    started = time.monotonic()
    try:
        outcome, status, timed_out, _ = await supervise(
            handle,
            Emitter(store, "tests", run_id, []),
            timeout_s=60,
            cancel=asyncio.Event(),
            grace_s=30,
            heartbeat=beat,
            heartbeat_every=5,
        )
    finally:
        await handle.remove()
    return decide_outcome(
        outcome=outcome,
        status=status,
        canceled=None,
        timed_out=60 if timed_out else None,
        started=started,
        limits=spec.limits,
    )


async def test_a_runtime_from_before_version_2_is_refused_with_a_way_out(
    store: EventStore, tmp_path: Path
) -> None:
    old = _fake_runtime(
        tmp_path / "old",
        """
        import json, time
        print(json.dumps({"t": "error", "message": "entrypoint '' must look like 'module:attribute'"}))
        """,
    )
    payload = await _run(store, tmp_path, old)

    assert isinstance(payload, RunFailed), payload
    assert "older protocol (v1)" in payload.error_message and "deploy the crew again" in payload.error_message


async def test_a_runtime_speaking_a_newer_version_is_stopped_at_once(
    store: EventStore, tmp_path: Path
) -> None:
    newer = _fake_runtime(
        tmp_path / "newer",
        """
        import json, time
        print(json.dumps({"t": "hello", "v": 3, "runtime": "python"}), flush=True)
        time.sleep(120)
        """,
    )
    started = time.monotonic()
    payload = await _run(store, tmp_path, newer)

    assert isinstance(payload, RunFailed), payload
    assert "speaks protocol v3; this runner speaks v2" in payload.error_message
    assert time.monotonic() - started < 30, "the runner must not wait for the grace period or the timeout"


async def test_a_request_for_an_unknown_operation_gets_a_clean_error_reply(
    store: EventStore, tmp_path: Path
) -> None:
    source = """
    from crewyard_runtime._protocol import RequestFailed, request

    def run(inputs):
        try:
            request("tables.get", {"name": "x"}, timeout=30)
        except RequestFailed as exc:
            return {"code": exc.code, "message": exc.message}
    """
    payload = await _run(store, tmp_path, REAL_RUNTIME, source)

    assert isinstance(payload, RunCompleted), payload
    assert payload.output == {"code": "unknown_op", "message": "this platform has no operation 'tables.get'"}
