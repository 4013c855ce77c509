"""Crews as their authors write them, deployed unchanged through whole platforms on bwrap and
docker: a CrewAI project in the layout CrewAI generates (src/, hatchling) installed as a package,
a crew asking for a Python the machine does not have, and an unchanged crew redeployed without
reinstalling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crewyard.testing.api import EXAMPLES, FRAMEWORK_BUILD_S, deploy, sse_events, wait_run, write_crew
from crewyard.testing.fakellm import FakeLLM
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def isolated_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    if request.param == "docker":
        env = {"CREWYARD_DOCKER_HOST": request.getfixturevalue("docker_host"),
               "CREWYARD_BASE_IMAGE": request.getfixturevalue("base_image")}  # fmt: skip
        p = PlatformProcess(
            tmp_path_factory.mktemp("pkg-docker"), backend="docker", build_backend="docker", env=env
        )
    else:
        p = PlatformProcess(tmp_path_factory.mktemp("pkg-bwrap"), backend="bwrap", build_backend="venv")
    p.start()
    yield p
    p.stop()


def _build_log(api: httpx.Client, dep: dict) -> str:
    log = sse_events(api, f"/v1/deployments/{dep['deployment_id']}/build-log")
    return "\n".join(m["data"]["data"].get("line", "") for m in log if m["event"] == "deployment.build.log")


def test_a_src_layout_crewai_project_runs_unchanged_and_redeploys_without_reinstalling(
    isolated_platform: PlatformProcess, llm: FakeLLM
):
    with isolated_platform.client(timeout=60) as api:
        for key, value in (("OPENAI_BASE_URL", llm.base_url), ("OPENAI_API_KEY", "sk-fake-key-for-tests")):
            assert api.put(f"/v1/projects/digest/env/{key}", json={"value": value}).status_code == 200
        dep = deploy(api, EXAMPLES / "research-digest", "digest", timeout=FRAMEWORK_BUILD_S)
        assert dep["status"] == "ready", (dep, _build_log(api, dep)[-3000:])
        # (docker images outlive a test session: content-addressed, an earlier session's is reused,
        # whole or — when only the runtime changed since — its environment image)
        build_log = _build_log(api, dep)
        assert dep["cached"] or "installing the crew's package" in build_log or "already built" in build_log

        run_id = api.post("/v1/runs", json={"project": "digest", "input": {"topic": "AI agents"}}).json()[
            "run_id"
        ]
        run = wait_run(api, run_id, timeout=300)
        types = [m["event"] for m in sse_events(api, f"/v1/runs/{run_id}/events")]
        # A sandbox or container has a private network of its own: the fake LLM on the host's
        # loopback is out of reach (as every address of the host is), so the run ends at the
        # first model call — after the installed package was imported and the crew started,
        # which is what this layout needed. (The whole CrewAI path runs in tests/e2e/test_frameworks.)
        assert run["status"] == "failed" and "connect" in run["error_message"].lower(), run
        assert "agent.started" in types and "task.started" in types, types

        again = deploy(api, EXAMPLES / "research-digest", "digest", timeout=600)
        assert again["status"] == "ready" and again["cached"] is True
        assert "already built" in _build_log(api, again)


def test_a_crew_asking_for_an_unavailable_python_fails_saying_what_is_available(
    isolated_platform: PlatformProcess, tmp_path: Path
):
    crew = write_crew(tmp_path / "py399", "def run(i):\n    return i\n")
    (crew / "crewyard.toml").write_text(
        '[deployment]\nframework = "python"\nentrypoint = "crew:run"\npython = "3.99"\n'
    )
    with isolated_platform.client(timeout=60) as api:
        dep = deploy(api, crew, "py399", timeout=300)
    assert dep["status"] == "failed"
    assert "Python 3.99" in dep["error_message"] and "available: 3." in dep["error_message"], dep
