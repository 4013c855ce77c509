"""Crews that misbehave, on the isolating backends (bwrap, docker): contained, ended, no escape."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import msgspec
import pytest

from crewyard import privatenet

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(120)


async def test_a_fork_bomb_hits_the_pids_limit_and_the_run_ends(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:fork_bomb"))

    assert out.status.code == 0
    assert out.result["failure"] == "EAGAIN"
    assert out.result["forks"] < 64  # TEST_LIMITS.pids, counting the runtime itself
    assert out.lingering == [], "the bomb's children outlived the run"


async def test_a_memory_hog_is_killed_and_reported_as_out_of_memory(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:memory_hog"))

    assert out.status.oom_killed, out.status
    assert out.status.signal == 9
    assert out.lingering == []


async def test_an_endless_loop_that_ignores_sigterm_is_killed_after_the_grace(isolated_runs: Runs) -> None:
    out = await isolated_runs.execute(isolated_runs.spec("crew:spin"), kill_when="spinning", grace_s=1)

    assert out.status.signal == 9 and not out.status.oom_killed, out.status
    assert out.lingering == []


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
