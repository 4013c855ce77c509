"""Docker backend specifics: concurrent runs are separate, orphans are found, errors are ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import docker
import docker.errors
import pytest

from crewyard.runner.backends import BackendError, BackendUnavailable, DockerBackend

if TYPE_CHECKING:
    from backend_helpers import Runs

    from crewyard.runner.backends import RunHandle

pytestmark = pytest.mark.timeout(180)


async def test_ten_concurrent_runs_each_see_only_their_own_files(docker_runs: Runs) -> None:
    specs = [docker_runs.spec("crew:scratch", input={"n": n, "pause": 1.0}) for n in range(10)]
    # return_exceptions: every run is finished and removed even when one of them fails.
    results = await asyncio.gather(*(docker_runs.execute(spec) for spec in specs), return_exceptions=True)

    outs = [r for r in results if not isinstance(r, BaseException)]
    assert len(outs) == 10, [r for r in results if isinstance(r, BaseException)]
    for n, out in enumerate(outs):
        assert out.status.code == 0, (n, out.status, out.stderr[-5:])
        assert out.result["before"] == {"artifacts": [], "tmp": []}
        assert out.result["after"] == {"artifacts": [f"run-{n}.txt"], "tmp": [f"run-{n}.txt"]}
        assert out.artifacts == {f"run-{n}.txt": str(n).encode()}


async def test_artifacts_are_read_where_a_local_engine_keeps_them_and_copied_out_otherwise(
    docker_runs: Runs, docker_archive_runs: Runs
) -> None:
    """A root runner beside the engine reads the run's volume in place; one that is not (the
    engine on another machine) copies it out with ``get_archive``. The same files either way,
    and the crew's links are left out of both."""
    here = await docker_runs.execute(docker_runs.spec("crew:links"))
    spec = docker_archive_runs.spec("crew:links")
    copied = await docker_archive_runs.execute(spec)

    volume = here.handle.volume  # type: ignore[attr-defined]
    assert here.folder is not None and volume in here.folder.parts, here.folder
    assert not here.folder.exists()  # the volume went with the run's removal
    assert copied.folder == spec.artifacts_dir
    for out in (here, copied):
        assert out.status.code == 0, out.stderr[-5:]
        assert out.artifacts == {"real.txt": b"a real file\n", "sub/nested.txt": b"nested\n"}
        assert sorted(r.split(":")[0] for r in out.skipped) == ["etc-link", "passwd-link"], out.skipped


async def test_an_exit_is_reported_only_once_the_engine_shows_the_container_ended(
    docker_runs: Runs, docker_host: str
) -> None:
    """Once the output stream ends, the exit is taken from ``inspect`` (sooner than the engine's
    ``wait``). A stream that ends while the container still runs — here the engine connection is
    cut on the runner's side — must not end the wait: it ends when the container does."""
    spec = docker_runs.spec("crew:sleeper", input={"marker": f"{uuid.uuid4().int % 10**6 + 2000}"})
    handle = await docker_runs.backend.start(spec)
    try:
        lines = handle.output()
        async with asyncio.timeout(60):
            async for stream, line in lines:
                if stream == "proto" and b"sleeping" in line:
                    break
        handle._stream._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        async with asyncio.timeout(30):
            async for _ in lines:  # the output ends…
                pass
        waiting = asyncio.create_task(handle.wait())
        await asyncio.sleep(1.5)  # …the inspect polls see a running container meanwhile
        assert not waiting.done(), waiting
        await handle.kill(0)
        status = await asyncio.wait_for(waiting, 60)
        state = docker.APIClient(base_url=docker_host).inspect_container(handle.container_id)["State"]  # type: ignore[attr-defined]
        assert state["Status"] in ("exited", "stopped") and status.signal in (9, 15), (state, status)
    finally:
        await handle.remove()


def _containers(docker_host: str, run_id: str) -> list[object]:
    client = docker.DockerClient(base_url=docker_host)
    try:
        return client.containers.list(all=True, filters={"label": f"crewyard.run_id={run_id}"})
    finally:
        client.close()


async def test_remove_leaves_no_container_and_no_volume(docker_runs: Runs, docker_host: str) -> None:
    spec = docker_runs.spec("crew:hello", input={"who": "x"})
    out = await docker_runs.execute(spec)

    handle = out.handle
    client = docker.DockerClient(base_url=docker_host)
    try:
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_container(handle.container_id)  # type: ignore[attr-defined]
        with pytest.raises(docker.errors.NotFound):
            client.api.inspect_volume(handle.volume)  # type: ignore[attr-defined]
    finally:
        client.close()


async def test_cleanup_orphans_removes_a_dead_runners_containers_only(
    docker_runs: Runs, docker_host: str
) -> None:
    dead, alive = f"dead-{uuid.uuid4().hex[:8]}", f"alive-{uuid.uuid4().hex[:8]}"
    backend = docker_runs.backend
    orphan = await backend.start(docker_runs.spec("crew:sleeper", input={"marker": 1000.75}, runner_id=dead))
    survivor = await backend.start(
        docker_runs.spec("crew:sleeper", input={"marker": 1000.75}, runner_id=alive)
    )
    try:
        # A new runner process (a new backend object) finds the dead runner's run by its label.
        assert await DockerBackend(docker_host).cleanup_orphans(dead) == 1
        assert _containers(docker_host, orphan._spec.run_id) == []  # type: ignore[attr-defined]
        assert len(_containers(docker_host, survivor._spec.run_id)) == 1  # type: ignore[attr-defined]
    finally:
        for handle in (orphan, survivor):
            with contextlib.suppress(BackendError):
                await handle.kill(0)
            await handle.remove()


RUNNER = """
import asyncio, pickle, sys
from crewyard.runner.backends import DockerBackend

async def main():
    host, spec = pickle.loads(sys.stdin.buffer.read())
    await DockerBackend(host).start(spec)
    print("started", flush=True)
    await asyncio.sleep(1000)

asyncio.run(main())
"""


async def test_a_killed_runners_containers_are_removed_by_its_reaper(
    docker_runs: Runs, docker_host: str, tmp_path: Path
) -> None:
    """No restart needed: the container of a runner that died is gone within seconds."""
    spec = docker_runs.spec("crew:sleeper", input={"marker": 1000.875})
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    runner = subprocess.Popen(  # noqa: ASYNC220 - a plain child we SIGKILL; nothing to await
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert runner.stdin and runner.stdout
    runner.stdin.write(pickle.dumps((docker_host, spec)))
    runner.stdin.close()
    try:
        assert await asyncio.wait_for(asyncio.to_thread(runner.stdout.readline), 60) == b"started\n"
        assert len(_containers(docker_host, spec.run_id)) == 1
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    finally:
        runner.kill()
        runner.wait()
        runner.stdout.close()
    deadline = time.monotonic() + 30
    while _containers(docker_host, spec.run_id):
        assert time.monotonic() < deadline, "the dead runner's container is still there"
        await asyncio.sleep(0.2)


async def test_an_unreachable_engine_is_backend_unavailable(docker_runs: Runs, tmp_path: object) -> None:
    backend = DockerBackend("unix:///nonexistent/crewyard-test.sock")
    with pytest.raises(BackendUnavailable):
        await backend.start(docker_runs.spec("crew:hello"))


async def test_a_missing_image_is_a_backend_error(docker_runs: Runs) -> None:
    spec = docker_runs.spec("crew:hello")
    spec.image = "crewyard/does-not-exist:nope"
    with pytest.raises(BackendError) as info:
        await docker_runs.backend.start(spec)
    assert not isinstance(info.value, BackendUnavailable)


async def test_a_runtime_waits_for_its_input_to_end_so_no_write_meets_the_containers_end(
    docker_runs: Runs,
) -> None:
    """The runner writes to a run's stdin whenever it must (a keepalive after each renewal of its
    lease). A write that met the container's end failed, and Podman reported the failure as a
    stderr frame on the attach (a line of the crew's output, at times cutting what it wrote
    last). So a container's runtime lingers after its last line until the runner, having read
    it, ends its input; the runner writes nothing after that."""
    keepalive = b'{"t": "keepalive", "within": 60}\n'
    for _ in range(3):
        spec = docker_runs.spec("crew:echo", input={"n": 1})
        handle = await docker_runs.backend.start(spec)
        ended = asyncio.Event()

        async def sending(handle: RunHandle, ended: asyncio.Event) -> None:
            while not ended.is_set():
                await handle.send(keepalive)
                await asyncio.sleep(0.001)

        sender = asyncio.create_task(sending(handle, ended))
        lines: list[tuple[str, bytes]] = []
        try:
            async for stream, line in handle.output():
                lines.append((stream, line))
                if stream == "proto" and json.loads(line)["t"] in ("result", "error"):
                    ended.set()  # as the runner does: its last line is read
                    await sender
                    await handle.end_input()
                    input_ended = time.monotonic()
                    await handle.send(keepalive)  # ignored: the input has ended
            status = await asyncio.wait_for(handle.wait(), 60)
            # Its input's end ended it, not the linger's bound (5 s; the engine's own exit takes
            # up to 1.4 s to be seen under load).
            assert time.monotonic() - input_ended < 4.0
        finally:
            ended.set()
            await sender
            await handle.remove()
        assert status.code == 0, (status, lines[-5:])
        stderr = [line.decode(errors="replace") for stream, line in lines if stream == "stderr"]
        assert not stderr, stderr
        assert [json.loads(line)["t"] for stream, line in lines if stream == "proto"][-1] == "result"
