"""Figures 5 (run start per backend) and 8 (unchanged redeploy).

Run timings are taken by a core NATS subscription to the bench project's run lifecycle
subjects in the bench process: the moment ``run.started`` / ``run.completed`` is stored, without
any polling interval. Raw and platform samples alternate one by one, so both see the same noise.
A run takes a warm sandbox when its pool has one ready by then (warm sandboxes are on by default);
figure 5b says how many did. Figure 9 compares warm and cold starts of real crews.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from crewyard import settings as crewyard_settings
from crewyard.core import subjects
from crewyard.packaging import pack
from crewyard.testing.platform import PlatformProcess

from ._context import PROJECT, Bench, BenchError, deploy, deployment, invoke
from ._stats import Figure, below, figure, ms, overhead_at_most

#: bwrap's own start with flags like the backend's: every namespace, read-only /usr, uid 1000.
BWRAP_TRUE = shlex.split(
    "bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr --symlink usr/bin /bin"
    " --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp"
    " --uid 1000 --gid 1000 true"
)


async def _spawn(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd[:3])} … exited {proc.returncode}: {err.decode(errors='replace')[-300:]}"
        )
    return time.perf_counter() - t0


def _deployment_python(platform: PlatformProcess) -> str:
    """The interpreter the process backend starts (the deployment's environment), else ours."""
    found = sorted((platform.data_dir / "cache").glob("envs/*/bin/python"))
    return str(found[0]) if found else sys.executable


async def _usable_backends(bench: Bench) -> dict[str, str | None]:
    """name → None when usable here, else why not, as the runner's own doctor says."""
    from crewyard.runner.backends import doctor

    base = crewyard_settings.load(bench.workdir / "doctor")
    # It tries the engine and a trial sandbox synchronously: off the event loop.
    results = await asyncio.to_thread(doctor, base)
    return {item.name: None if item.usable else (item.reason or "no") for item in results}


async def _backend_figures(
    bench: Bench, platform: PlatformProcess, backend: str, raw_cmd: list[str]
) -> list[Figure]:
    await bench.deployed(platform)
    nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
    seen: dict[str, dict[str, float]] = {}
    warm: set[str] = set()
    arrived = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        _, _, run_id, event_type = subjects.parse_subject(msg.subject)
        seen.setdefault(run_id, {})[event_type] = time.perf_counter()
        if event_type == "run.started" and b'"warm":true' in msg.data:
            warm.add(run_id)
        arrived.set()

    await nc.subscribe(f"{subjects.PREFIX}.{PROJECT}.run.*.run.*", cb=on_msg)
    await nc.flush()
    started: list[float] = []
    completed: list[float] = []
    raw: list[float] = []
    ran: list[str] = []
    try:
        async with platform.async_client(timeout=60) as client:

            async def one_run() -> tuple[float, float]:
                t0 = time.perf_counter()
                run_id = await invoke(client, {})
                ran.append(run_id)
                deadline = time.monotonic() + 120
                while True:
                    arrived.clear()
                    got = seen.get(run_id, {})
                    if any(t in got for t in ("run.completed", "run.failed", "run.canceled")):
                        break
                    await asyncio.wait_for(arrived.wait(), max(deadline - time.monotonic(), 0.01))
                if "run.completed" not in got or "run.started" not in got:
                    run = (await client.get(f"/v1/runs/{run_id}")).json()
                    raise BenchError(f"no-op run on {backend} did not complete: {run.get('error_message')}")
                return got["run.started"] - t0, got["run.completed"] - t0

            await one_run()  # warm-up: first use of the environment, page cache
            await _spawn(raw_cmd)
            for i in range(bench.n(20, 3)):
                if i % 2:
                    raw.append(await _spawn(raw_cmd))
                s, c = await one_run()
                started.append(s)
                completed.append(c)
                if not i % 2:
                    raw.append(await _spawn(raw_cmd))
    finally:
        await nc.drain()
    raw_ms = statistics.median(ms(raw))
    warm_runs = f"{len(warm & set(ran[1:]))} of {len(started)} on a warm sandbox"
    label = {"process": f"{Path(raw_cmd[0]).name} -c pass", "bwrap": "bwrap … true"}.get(
        backend, "podman run --rm … true"
    )
    return [
        figure(
            f"5a-{backend}",
            f"invoke → run.started ({backend})",
            "ms",
            ms(started),
            baseline=None,
            baseline_label="none: no backend work happens before run.started",
            target=below(50, "ms"),
            detail=f"median of {len(started)} sequential no-op runs",
        ),
        figure(
            f"5b-{backend}",
            f"invoke → run.completed, no-op crew ({backend})",
            "ms",
            ms(completed),
            baseline=raw_ms,
            baseline_label=f"raw start: {label}",
            # A container engine's own start and stop are slower to report (see the README).
            target=overhead_at_most(100 if backend == "docker" else 50, "ms"),
            detail=f"overhead {statistics.median(ms(completed)) - raw_ms:.0f} ms over raw; {warm_runs}",
            extra={
                "raw_ms": ms(raw),
                "overhead_ms": statistics.median(ms(completed)) - raw_ms,
                "warm_runs": len(warm & set(ran[1:])),
            },
        ),
    ]


async def run_start_figures(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    figures = await _backend_figures(bench, platform, "process", [_deployment_python(platform), "-c", "pass"])
    usable = await _usable_backends(bench)
    for name in ("bwrap", "docker"):
        reason = usable.get(name, "not reported by the runner's doctor")
        if reason is not None:
            hint = (
                " — to include it: scripts/containers.sh, then CREWYARD_DOCKER_HOST=unix://… and "
                "CREWYARD_BASE_IMAGE=crewyard/base:bookworm"
                if name == "docker"
                else ""
            )
            bench.notes.append(f"figure 5 on {name}: skipped ({reason}){hint}")
            continue
        try:
            other = await bench.extra_platform(name, name, "docker" if name == "docker" else "venv")
        except Exception as exc:
            bench.notes.append(f"figure 5 on {name}: platform did not start ({exc})")
            continue
        try:
            if name == "bwrap":
                raw_cmd = BWRAP_TRUE
            else:
                image = (await bench.deployed(other)).detail.get("image")
                if not image:
                    raise BenchError("the docker deployment reports no image")
                # Through the same engine the backend uses (its socket), so its containers.conf applies.
                host = crewyard_settings.load(bench.workdir / "doctor").docker_host
                remote = ["--url", host] if host else []
                raw_cmd = ["podman", *remote, "run", "--rm", "--network", "none", str(image), "true"]
            figures += await _backend_figures(bench, other, name, raw_cmd)
        except Exception as exc:
            bench.notes.append(f"figure 5 on {name}: failed ({type(exc).__name__}: {exc})")
        finally:
            await bench.stop_extra(other)
    return figures


# -- figure 8 --------------------------------------------------------------------------------------


async def _raw_upload(nc: Client, folder: Path, key: str) -> float:
    """The irreducible part of a redeploy: read and pack the source, store it once."""
    t0 = time.perf_counter()
    data = await asyncio.to_thread(pack, folder)
    obs = await nc.jetstream().create_object_store("BENCH_RAW_UPLOADS")
    await obs.put(key, data)
    return time.perf_counter() - t0


async def redeploy_figure(bench: Bench) -> list[Figure]:
    platform = await bench.platform()
    cold = await bench.deployed(platform)
    nc = await nats.connect(platform.nats_url, user_credentials=str(platform.creds()))
    ours: list[float] = []
    raw: list[float] = []
    cached: list[Any] = []
    try:
        async with platform.async_client(timeout=120) as client:
            for i in range(bench.n(5, 2)):
                if i % 2:
                    raw.append(await _raw_upload(nc, bench.crew_dir, f"src-{i}"))
                dep_id, seconds = await deploy(client, bench.crew_dir)
                ours.append(seconds)
                cached.append((await deployment(client, dep_id)).get("cached"))
                if not i % 2:
                    raw.append(await _raw_upload(nc, bench.crew_dir, f"src-{i}"))
    finally:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_object_store("BENCH_RAW_UPLOADS")
        await nc.drain()
    return [
        figure(
            "8",
            "unchanged redeploy: deploy → ready",
            "s",
            ours,
            baseline=statistics.median(raw),
            baseline_label="pack + NATS object-store put",
            target=below(1.0, "s"),
            detail=f"cold first deploy {cold.cold_seconds:.2f} s; builds reported cached: {cached}",
            extra={"cold_deploy_s": cold.cold_seconds, "cached": cached},
        )
    ]
