"""What the figures share: a scratch folder, the bench's own nats-server, the platform under test,
the bench crew and its deployment, and the few HTTP calls every figure makes (deploy, invoke, wait).

Servers start lazily, so ``--only append`` never starts a platform and ``--only api`` never
starts the bench's own broker.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, TypeVar

import httpx

from crewyard.core.subjects import PREFIX
from crewyard.errors import CrewyardError
from crewyard.natsserver import EmbeddedNats
from crewyard.packaging import pack
from crewyard.testing.api import write_crew
from crewyard.testing.platform import PlatformProcess

PROJECT = "bench"
N = TypeVar("N", int, float)
TERMINAL = (b"run.completed", b"run.failed", b"run.canceled")

#: The bench crew. With ``go_file`` it waits until that file exists, so every client can attach
#: before the first event (the process backend shares the host's filesystem; that is why the live
#: figures run on it). Then it emits ``n`` tool.result events carrying their emit time, paced by
#: an absolute schedule so the rate holds on average even when one sleep overshoots.
CREW = '''"""The bench crew: wait for a go file, then emit n tool.result events stamped with time.time()."""
import os
import time

from crewyard_runtime import emit


def run(inputs):
    go = inputs.get("go_file")
    if go:
        deadline = time.monotonic() + float(inputs.get("go_timeout", 120))
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise TimeoutError("the bench never said go")
            time.sleep(0.002)
    n, interval = int(inputs.get("n", 0)), float(inputs.get("interval", 0.0))
    due = time.perf_counter()
    for _ in range(n):
        emit("tool.result", tool="bench", output=time.time())
        if interval:
            due += interval
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
    return {"emitted": n}
'''


#: Benchmarks measure the platform, not the per-key rate limit of mutating requests.
UNLIMITED = {"CREWYARD_RATE_LIMIT": "0", "CREWYARD_STREAMS_PER_KEY": "0"}


class BenchError(CrewyardError, RuntimeError):
    pass


class Deployed:
    """The bench crew deployed on one platform, with how long its first (uncached) build took."""

    def __init__(self, deployment_id: str, cold_seconds: float, detail: dict[str, Any]) -> None:
        self.deployment_id = deployment_id
        self.cold_seconds = cold_seconds
        self.detail = detail


class Bench:
    def __init__(self, workdir: Path, *, quick: bool, peer_env: Path | None = None) -> None:
        self.workdir = workdir
        self.quick = quick
        #: Where figure 10's peer (LangGraph's server) is installed, when kept between runs.
        self.peer_env = peer_env
        self._nats: EmbeddedNats | None = None
        self._platform: PlatformProcess | None = None
        self._others: list[PlatformProcess] = []
        self._deployed: dict[str, Deployed] = {}
        self.crew_dir = write_crew(workdir / "crew", CREW)
        self.prefix = PREFIX
        #: What was left out and why (a backend that is not usable here, …), for the report.
        self.notes: list[str] = []

    def n(self, full: N, quick: N) -> N:
        """A size: the full one, or the small one in ``--quick`` mode."""
        return quick if self.quick else full

    # -- servers -------------------------------------------------------------------------------

    async def nats_url(self) -> str:
        """The bench's own nats-server (JetStream, file store), for the store-level figures."""
        if self._nats is None:
            self._nats = EmbeddedNats(self.workdir / "bench-nats")
            await asyncio.to_thread(self._nats.start)
        return self._nats.url

    @property
    def nats_creds(self) -> str:
        """The admin user's credentials for the bench's own nats-server (after ``nats_url``)."""
        assert self._nats is not None
        return str(self._nats.creds("admin"))

    async def platform(self) -> PlatformProcess:
        """The platform under test: ``crewyard up`` with the process backend, started once."""
        if self._platform is None:
            platform = PlatformProcess(self.workdir / "platform", env=UNLIMITED)
            self._platform = await asyncio.to_thread(platform.start)
        return self._platform

    @property
    def platform_started(self) -> PlatformProcess | None:
        return self._platform

    async def extra_platform(
        self, name: str, backend: str, build_backend: str, env: dict[str, str] | None = None
    ) -> PlatformProcess:
        """Another ``crewyard up`` (e.g. on the bwrap backend); stopped with the bench."""
        p = PlatformProcess(
            self.workdir / f"platform-{name}",
            backend=backend,
            build_backend=build_backend,
            env={**UNLIMITED, **(env or {})},
        )
        self._others.append(p)
        return await asyncio.to_thread(p.start)

    async def stop_extra(self, platform: PlatformProcess) -> None:
        await asyncio.to_thread(platform.stop)
        if platform in self._others:
            self._others.remove(platform)

    def close(self) -> None:
        for p in [*self._others, *([self._platform] if self._platform else [])]:
            p.stop()
        if self._nats is not None:
            self._nats.stop()

    # -- the bench crew --------------------------------------------------------------------------

    async def deployed(self, platform: PlatformProcess) -> Deployed:
        """The bench crew on ``platform``, deployed on first use (that first deploy is cold)."""
        if platform.api not in self._deployed:
            async with platform.async_client(timeout=300) as client:
                dep_id, seconds = await deploy(client, self.crew_dir)
                detail = await deployment(client, dep_id)
            self._deployed[platform.api] = Deployed(dep_id, seconds, detail)
        return self._deployed[platform.api]


async def deploy(client: httpx.AsyncClient, folder: Path, project: str = PROJECT) -> tuple[str, float]:
    """Upload ``folder`` and follow its build log until ready: (deployment id, seconds it took).

    The clock starts before packing, because ``crewyard deploy`` makes the user wait for that too,
    and stops when the build-log stream delivers ``deployment.ready`` (no polling interval in it).
    """
    t0 = time.perf_counter()
    r = await client.post(
        f"/v1/projects/{project}/deployments",
        content=pack(folder),
        headers={"Content-Type": "application/gzip"},
    )
    if r.status_code != 202:
        raise BenchError(f"deploy: HTTP {r.status_code}: {r.text}")
    dep_id = str(r.json()["deployment_id"])
    async with client.stream("GET", f"/v1/deployments/{dep_id}/build-log") as resp:
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
                if kind == "deployment.ready":
                    return dep_id, time.perf_counter() - t0
                if kind == "deployment.failed":
                    break
    detail = (await client.get(f"/v1/deployments/{dep_id}")).text
    raise BenchError(f"deployment {dep_id} did not become ready: {detail}")


async def deployment(client: httpx.AsyncClient, dep_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The deployment as the API shows it once the read model has its end (the build log comes
    straight from the stream, so right after ``deployment.ready`` the read model may lag)."""
    deadline = time.monotonic() + timeout
    while True:
        dep: dict[str, Any] = (await client.get(f"/v1/deployments/{dep_id}")).json()
        if dep.get("status") != "building" or time.monotonic() > deadline:
            return dep
        await asyncio.sleep(0.02)


async def invoke(client: httpx.AsyncClient, inputs: dict[str, Any], project: str = PROJECT) -> str:
    r = await client.post("/v1/runs", json={"project": project, "input": inputs})
    if r.status_code != 202:
        raise BenchError(f"invoke: HTTP {r.status_code}: {r.text}")
    return str(r.json()["run_id"])


async def wait_finished(client: httpx.AsyncClient, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = (await client.get(f"/v1/runs/{run_id}")).json()
        if run.get("status") in ("succeeded", "failed", "canceled"):
            if run["status"] != "succeeded":
                raise BenchError(f"run {run_id} {run['status']}: {run.get('error_message')}")
            return run
        await asyncio.sleep(0.05)
    raise BenchError(f"run {run_id} not finished after {timeout:g}s")
