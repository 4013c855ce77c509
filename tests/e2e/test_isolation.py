"""examples/hello through the isolated backends of a whole platform: docker (podman's Docker
API, an image built per deployment) and bwrap (a sandbox around the deployment's venv)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.platform import PlatformProcess

ALIKE = (
    "run.queued",
    "run.started",
    "log",
    "agent.started",
    "task.started",
    "tool.called",
    "tool.result",
    "task.completed",
    "agent.completed",
    "artifact",
    "run.completed",
)


def _platform(root: Path, backend: str, build_backend: str, env: dict[str, str]) -> PlatformProcess:
    return PlatformProcess(root, backend=backend, build_backend=build_backend, env=env).start()


@pytest.fixture(scope="module")
def docker_platform(
    tmp_path_factory: pytest.TempPathFactory, docker_host: str, base_image: str
) -> Iterator[PlatformProcess]:
    env = {"CREWYARD_DOCKER_HOST": docker_host, "CREWYARD_BASE_IMAGE": base_image}
    p = _platform(tmp_path_factory.mktemp("docker-platform"), "docker", "docker", env)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def bwrap_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = _platform(tmp_path_factory.mktemp("bwrap-platform"), "bwrap", "venv", {})
    yield p
    p.stop()


def _hello(platform: PlatformProcess) -> tuple[dict, dict, list[dict], bytes]:
    with platform.client(timeout=60) as api:
        dep = deploy(api, EXAMPLES / "hello", "hello", timeout=600)
        assert dep["status"] == "ready", dep
        run_id = api.post(
            "/v1/runs", json={"project": "hello", "input": {"topic": "isolation", "delay": 0}}
        ).json()["run_id"]
        run = wait_run(api, run_id, timeout=120)
        events = sse_events(api, f"/v1/runs/{run_id}/events")
        report = api.get(f"/v1/runs/{run_id}/artifacts/report.md").content
        return dep, run, events, report


def test_hello_runs_identically_in_a_container_and_a_sandbox(docker_platform, bwrap_platform):
    dep_d, run_d, events_d, report_d = _hello(docker_platform)
    _dep_b, run_b, events_b, report_b = _hello(bwrap_platform)
    assert dep_d["backend"] == "docker" and dep_d["image"]
    assert run_d["status"] == run_b["status"] == "succeeded", (run_d, run_b)
    assert run_d["backend"] == "docker" and run_b["backend"] == "bwrap"
    assert run_d["isolated"] is True and run_b["isolated"] is True

    def shape(events: list[dict]) -> list[tuple[str, object]]:
        keep = []
        for m in events:
            data = m["data"]["data"]
            if m["event"] == "log":
                keep.append(("log", data["message"]))
            elif m["event"] in ALIKE and m["event"] not in ("run.started", "run.completed", "run.queued"):
                keep.append((m["event"], {k: v for k, v in data.items() if k != "sha256"}))
        return keep

    assert shape(events_d) == shape(events_b)
    assert report_d == report_b
    assert run_d["output"] == run_b["output"]


def test_unchanged_redeploy_reuses_the_image(docker_platform):
    with docker_platform.client(timeout=60) as api:
        first = deploy(api, EXAMPLES / "hello", "reuse", timeout=600)
        again = deploy(api, EXAMPLES / "hello", "reuse", timeout=600)
        assert first["image"] == again["image"]
        assert again["cached"] is True
        log = sse_events(api, f"/v1/deployments/{again['deployment_id']}/build-log")
        lines = " ".join(
            m["data"]["data"].get("line", "") for m in log if m["event"] == "deployment.build.log"
        )
        assert "skip" in lines.lower() or "already" in lines.lower(), lines
