"""Crews that misbehave, on the isolating backends (bwrap, docker): contained, ended, no escape."""

from __future__ import annotations

import asyncio
import pwd
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
from backend_helpers import ForkedRun, run_processes

from crewyard import privatenet, sandboxuid
from crewyard.runner import disk
from crewyard.runner.backends import BackendUnavailable, DockerBackend, RunHandle, _bwrap_server, doctor
from crewyard.runner.backends._base import RUN_NOFILE, SHM_BYTES
from crewyard.settings import Settings

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(120)


async def test_a_fork_bomb_hits_the_pids_limit_and_the_run_ends(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:fork_bomb"))

    assert out.status.code == 0
    assert out.result["failure"] == "EAGAIN"
    assert out.result["forks"] < 64  # TEST_LIMITS.pids, counting the runtime itself
    assert out.lingering == [], "the bomb's children outlived the run"


async def test_a_crew_holds_a_bounded_number_of_open_files(runs: Runs) -> None:
    # The runner's limits were a crew's: a hard limit of a million (docker's default is higher).
    out = await runs.execute(runs.spec("crew:descriptor_hoarder"))

    assert out.status.code == 0, out
    assert out.result["hard"] == RUN_NOFILE and out.result["raised"] == "ValueError"
    assert out.result["failure"] == "EMFILE" and out.result["held"] < RUN_NOFILE


async def test_dev_shm_is_bounded(isolated_runs: Runs) -> None:
    # A tmpfs is memory: bwrap's /dev/shm had no size (the memory cgroup, where there is one,
    # bounds it only with the run's whole memory).
    out = await isolated_runs.execute(isolated_runs.spec("crew:shm_filler"))

    assert out.status.code == 0, out
    assert out.result["failure"] == "ENOSPC" and out.result["written"] <= SHM_BYTES, out.result


async def test_a_memory_hog_is_killed_and_reported_as_out_of_memory(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:memory_hog"))

    assert out.status.oom_killed, out.status
    assert out.status.signal == 9
    assert out.lingering == []


async def test_an_endless_loop_that_ignores_sigterm_is_killed_after_the_grace(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:spin"), kill_when="spinning", grace_s=1)

    assert out.status.signal == 9 and not out.status.oom_killed, out.status
    assert out.lingering == []


async def test_the_disk_a_running_crew_takes_is_seen_where_it_writes(isolated_runs: Runs) -> None:
    # The runner's watch (``runner/disk``) measures the folder the handle names while the crew
    # runs: a sandbox's artifacts folder, a forked run's slot, a local engine's volume.
    seen: dict[str, str | None] = {}

    async def measure(handle: RunHandle) -> None:
        folder = await handle.files_folder()
        assert folder is not None
        seen["within"] = await asyncio.to_thread(disk.over, folder, 64 << 20)
        seen["over"] = await asyncio.to_thread(disk.over, folder, 4 << 20)

    spec = isolated_runs.spec("crew:disk_writer", input={"mib": 8})
    await isolated_runs.execute(spec, kill_when="written", grace_s=1, while_running=measure)

    assert seen == {
        "within": None,
        "over": "the run's files take more than 4 MiB, its disk limit (CREWYARD_RUN_MAX_DISK)",
    }


async def test_files_a_running_crew_unlinked_but_keeps_open_are_seen(isolated_runs: Runs) -> None:
    # In no folder, yet on the disk until closed: the watch finds them through the run's
    # processes (its control group's, its container's) and their open files.
    seen: dict[str, object] = {}

    async def measure(handle: RunHandle) -> None:
        folder, processes = await handle.files_folder(), await handle.processes()
        assert folder is not None and processes
        seen["walk alone"] = await asyncio.to_thread(disk.over, folder, 4 << 20)
        seen["over"] = await asyncio.to_thread(disk.over, folder, 4 << 20, processes)

    spec = isolated_runs.spec("crew:unlinked_writer", input={"mib": 8})
    await isolated_runs.execute(spec, kill_when="written", grace_s=1, while_running=measure)

    assert seen == {
        "walk alone": None,
        "over": "the run's files take more than 4 MiB, its disk limit (CREWYARD_RUN_MAX_DISK),"
        " 8 of them deleted but kept open",
    }


async def test_nothing_outside_the_artifacts_folder_can_be_written(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(
        isolated_runs.spec("crew:write_outside", input={"extra": ["/pwned.txt"]})
    )

    assert out.status.code == 0
    assert out.result and all(outcome in ("EROFS", "EACCES", "EPERM") for outcome in out.result.values()), (
        out.result
    )


async def test_links_in_the_artifacts_folder_are_not_collected(isolated_runs: Runs) -> None:
    spec = isolated_runs.spec("crew:links")
    out = await isolated_runs.execute(spec)

    assert out.result == "linked"
    # What the runner collects: docker's archive leaves links out on the way (handle.skipped);
    # a folder on this host (bwrap's, a local engine's volume) is read by the collector, which
    # follows none.
    assert out.artifacts == {"real.txt": b"a real file\n", "sub/nested.txt": b"nested\n"}
    reasons = out.skipped
    assert sorted(r.split(":")[0] for r in reasons) == ["etc-link", "passwd-link"], reasons
    assert all("link" in r for r in reasons)


async def test_without_network_only_loopback_exists(isolated_runs: Runs) -> None:
    limits = msgspec.structs.replace(isolated_runs.spec("crew:network").limits, network="none")
    out = await isolated_runs.execute(isolated_runs.spec("crew:network", limits=limits))

    assert out.result["interfaces"] == ["lo"]
    assert out.result["connect"] in ("ENETUNREACH", "EHOSTUNREACH"), out.result


async def test_the_default_network_is_private_and_reaches_no_address_of_the_host(isolated_runs: Runs) -> None:
    """Outbound only: a private stack with a default route, but the host's own addresses (every
    interface, not only loopback), its gateway alias and link-local metadata are unreachable."""
    with socket.create_server(("0.0.0.0", 0)) as listener:  # a platform port on every interface
        port = listener.getsockname()[1]
        hosts = [str(n.network_address) for n in privatenet.host_addresses()]
        targets = [[h, port] for h in [*hosts, "127.0.0.1", "10.0.2.2"]] + [["169.254.169.254", 80]]
        out = await isolated_runs.execute(isolated_runs.spec("crew:reach", input={"targets": targets}))

    assert out.status.code == 0, out.stderr
    assert "tap0" in out.result["interfaces"] and out.result["default_route"], out.result
    assert out.result["nameservers"] == ["10.0.2.3"]
    assert hosts, "the host should have a non-loopback address to try"
    reached = {target: how for target, how in out.result["results"].items() if how == "connected"}
    assert reached == {}, f"the crew reached the host: {reached}"


def _uids(pid: int) -> tuple[int, ...]:
    """A process's real, effective, saved and file-system uids, as the host sees them."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(u) for u in line.split()[1:])
    raise AssertionError(f"no Uid line for {pid}")


async def test_the_crews_user_is_no_account_of_the_host(isolated_runs: Runs) -> None:
    """A fork server's sandbox (an unprivileged bwrap) and a container on a rootful engine are
    the crew's user on the host too. They were uid 1000, on most machines the first person's
    login, who could then read a run's memory (its project's secrets, its input) through
    /proc/<pid>/mem; a cold sandbox, made by a privileged bwrap, is root's on the host."""
    spec = isolated_runs.spec("crew:sleeper", input={"marker": 1000.375})
    handle = await isolated_runs.backend.start(spec)
    try:
        async with asyncio.timeout(60):
            async for stream, line in handle.output():
                if stream == "proto" and b"sleeping" in line:
                    break
        forked = isinstance(handle, ForkedRun)
        pids = await handle.pids() if isinstance(handle, ForkedRun) else run_processes(spec.run_id)
        seen = {_uids(pid) for pid in pids}
    finally:
        await handle.kill(0)
        await asyncio.wait_for(handle.wait(), 60)
        await handle.remove()
    expected = 0 if isolated_runs.kind == "bwrap" and not forked else sandboxuid.DEFAULT
    assert pids and seen == {(expected,) * 4}, seen
    if expected:
        with pytest.raises(KeyError):
            pwd.getpwuid(expected)


def test_a_sandbox_uid_an_account_has_is_refused() -> None:
    assert sandboxuid.problem(sandboxuid.DEFAULT) is None
    login = next((a for a in pwd.getpwall() if a.pw_uid != 0), pwd.getpwuid(0))
    assert f"the account {login.pw_name!r}" in (sandboxuid.problem(login.pw_uid) or "")
    assert "not a uid" in (sandboxuid.problem(65534) or "")
    assert _bwrap_server.unavailable("bwrap", login.pw_uid) == sandboxuid.problem(login.pw_uid)
    with pytest.raises(BackendUnavailable, match="CREWYARD_SANDBOX_UID"):
        DockerBackend("unix:///nonexistent.sock", user_uid=login.pw_uid).api()
    # What `crewyard doctor` says: the uid, not a hint about an engine that is not the problem.
    docker = doctor(Settings(data_dir=Path("/nonexistent"), sandbox_uid=login.pw_uid, docker_host=""))[0]
    assert docker.name == "docker" and not docker.usable
    assert docker.reason == sandboxuid.problem(login.pw_uid), docker.reason
