"""A LangGraph.js crew in TypeScript, deployed unchanged through whole platforms on bwrap and docker.

The example (``examples/langgraph-js-agent``: package.json + package-lock.json, a graph calling an
OpenAI-compatible model through ``@langchain/openai``) is built (``npm ci`` in the build sandbox or
build container), run with its node and tool events, its console output as logs and its report
collected as an artifact; a code-only redeploy reuses the installed dependencies and an unchanged
one the whole build.

The sandboxes' private network keeps every address of the host out of reach, so the fake LLM
listens where a company's model gateway would: on a private address of a neighbouring network
namespace, which the platform is told to allow (``CREWYARD_NETWORK_ALLOW``), as an operator would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.fakellm import FakeLLM
from crewyard.testing.neighbour import Neighbour
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(1200)
EXAMPLE = EXAMPLES / "langgraph-js-agent"
NODE_BASE_IMAGE = "crewyard/node:bookworm"  # made by scripts/containers.sh


@pytest.fixture(scope="module")
def neighbour() -> Iterator[Neighbour]:
    with Neighbour() as n:
        yield n


@pytest.fixture(scope="module")
def llm(neighbour: Neighbour) -> Iterator[FakeLLM]:
    server = neighbour.run(lambda: FakeLLM(host=neighbour.address).start())
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def isolated_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, neighbour: Neighbour
) -> Iterator[PlatformProcess]:
    env = {"CREWYARD_NETWORK_ALLOW": neighbour.allow}
    if request.param == "docker":
        env |= {"CREWYARD_DOCKER_HOST": request.getfixturevalue("docker_host"),
                "CREWYARD_BASE_IMAGE": request.getfixturevalue("base_image"),
                "CREWYARD_NODE_BASE_IMAGE": NODE_BASE_IMAGE}  # fmt: skip
        p = PlatformProcess(
            tmp_path_factory.mktemp("js-docker"), backend="docker", build_backend="docker", env=env
        )
    else:
        p = PlatformProcess(
            tmp_path_factory.mktemp("js-bwrap"), backend="bwrap", build_backend="venv", env=env
        )
    p.start()
    yield p
    p.stop()


def _build_log(api: httpx.Client, dep: dict) -> str:
    log = sse_events(api, f"/v1/deployments/{dep['deployment_id']}/build-log")
    return "\n".join(m["data"]["data"].get("line", "") for m in log if m["event"] == "deployment.build.log")


def _run(api: httpx.Client, project: str, topic: str) -> tuple[dict, list[dict]]:
    run_id = api.post("/v1/runs", json={"project": project, "input": {"topic": topic}}).json()["run_id"]
    run = wait_run(api, run_id, timeout=300)
    return run, sse_events(api, f"/v1/runs/{run_id}/events")


def test_a_typescript_langgraph_crew_runs_with_its_events_and_artifact_and_redeploys_without_reinstalling(
    isolated_platform: PlatformProcess, llm: FakeLLM, tmp_path: Path
) -> None:
    with isolated_platform.client(timeout=60) as api:
        for key, value in (("OPENAI_BASE_URL", llm.base_url), ("OPENAI_API_KEY", "sk-fake-key-for-tests")):
            assert api.put(f"/v1/projects/jsgraph/env/{key}", json={"value": value}).status_code == 200
        dep = deploy(api, EXAMPLE, "jsgraph", timeout=900)
        assert dep["status"] == "ready", (dep, _build_log(api, dep)[-3000:])
        assert dep["config"]["framework"] == "langgraph-js"
        # (docker images outlive a test session: content-addressed, an earlier session's is reused,
        # whole or — when only the crew's code or the runtime changed since — its environment image)
        build_log = _build_log(api, dep)
        assert dep["cached"] or "already built" in build_log or "(npm ci)" in build_log, build_log[-2000:]

        before = len(llm.chat_requests())
        run, events = _run(api, "jsgraph", "agent graphs")
        assert run["status"] == "succeeded", run
        types = [m["event"] for m in events]
        for expected in ("run.started", "task.started", "tool.called", "tool.result", "task.completed",
                         "log", "artifact", "run.completed"):  # fmt: skip
            assert expected in types, types
        tasks = [m["data"]["data"]["task"] for m in events if m["event"] == "task.started"]
        assert tasks == ["research", "write"], tasks
        called = next(m["data"]["data"] for m in events if m["event"] == "tool.called")
        assert called["tool"] == "search_notes" and called["agent"] == "research", called
        logs = [m["data"]["data"]["message"] for m in events if m["event"] == "log"]
        assert "researching agent graphs" in logs, logs  # the crew's console.log
        assert "Fake LLM answer" in run["output"]["report"], run["output"]
        report = api.get(f"/v1/runs/{run['id']}/artifacts/report.md")
        assert report.status_code == 200 and report.text == run["output"]["report"]
        assert len(llm.chat_requests()) >= before + 3, "the crew never reached the model"

        # A code-only change: new source, same package.json and lock → the same dependencies.
        changed = tmp_path / "langgraph-js-agent"
        shutil.copytree(EXAMPLE, changed, ignore=shutil.ignore_patterns("node_modules"))
        graph = changed / "src" / "graph.ts"
        graph.write_text(graph.read_text().replace("researching ${topic}", "researching (v2) ${topic}"))
        again = deploy(api, changed, "jsgraph", timeout=600)
        assert again["status"] == "ready", again
        build_log = _build_log(api, again)
        assert "already built" in build_log and "npm ci" not in build_log, build_log[-2000:]
        run, events = _run(api, "jsgraph", "tool calls")
        assert run["status"] == "succeeded", run
        assert "researching (v2) tool calls" in [m["data"]["data"].get("message") for m in events]

        unchanged = deploy(api, changed, "jsgraph", timeout=600)
        assert unchanged["status"] == "ready" and unchanged["cached"] is True, unchanged
