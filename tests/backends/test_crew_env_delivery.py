"""The crew's environment reaches only its runtime (in the protocol's ``prepare``): no process
of the run has it in its environment or command line as it started — bwrap's included — and a
container's stored configuration (what ``docker inspect`` shows) holds none of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from backend_helpers import ForkedRun, run_processes

from crewyard.runner.backends import DockerBackend

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(120)


def _holding(pids: list[int], token: str) -> list[str]:
    """Which of the processes' initial environments and command lines hold ``token``."""
    found = []
    for pid in pids:
        for what in ("environ", "cmdline"):
            try:
                if token.encode() in Path(f"/proc/{pid}/{what}").read_bytes():
                    found.append(f"{pid}/{what}")
            except OSError:
                continue  # gone meanwhile
    return found


async def test_the_crews_variables_are_in_no_process_environment_and_no_container_config(runs: Runs) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    spec = runs.spec("crew:spin", env={"CREW_TOKEN": token})
    handle = await runs.backend.start(spec)
    try:

        async def spinning() -> None:
            async for _, line in handle.output():
                if b"spinning" in line:
                    return

        await asyncio.wait_for(spinning(), 60)
        pids = await handle.pids() if isinstance(handle, ForkedRun) else run_processes(spec.run_id)
        assert pids, "the run's processes should be found by their run id"
        assert await asyncio.to_thread(_holding, pids, token) == []
        if isinstance(runs.backend, DockerBackend):
            container = handle.container_id  # type: ignore[attr-defined]
            stored = await asyncio.to_thread(runs.backend.api().inspect_container, container)
            assert token not in json.dumps(stored)
    finally:
        await handle.kill(0)
        await handle.remove()
