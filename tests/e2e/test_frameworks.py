"""Real crews, deployed unchanged from their folders, run end to end through the platform
(real CrewAI and LangGraph, a fake OpenAI-compatible LLM on loopback)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from crewyard.packaging import pack
from crewyard.testing.api import EXAMPLES, FRAMEWORK_BUILD_S, deploy, sse_events, wait_run, write_crew
from crewyard.testing.fakellm import FakeLLM


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _configure(api: httpx.Client, project: str, llm: FakeLLM) -> None:
    for key, value in (("OPENAI_BASE_URL", llm.base_url), ("OPENAI_API_KEY", "sk-fake-key-for-tests")):
        assert api.put(f"/v1/projects/{project}/env/{key}", json={"value": value}).status_code == 200


def _run(api: httpx.Client, project: str, payload: dict) -> tuple[dict, list[dict]]:
    run_id = api.post("/v1/runs", json={"project": project, "input": payload}).json()["run_id"]
    run = wait_run(api, run_id, timeout=180)
    return run, sse_events(api, f"/v1/runs/{run_id}/events")


def test_research_crew(api: httpx.Client, llm: FakeLLM):
    _configure(api, "research", llm)
    dep = deploy(api, EXAMPLES / "research-crew", "research", timeout=FRAMEWORK_BUILD_S)
    assert dep["status"] == "ready", dep
    assert dep["config"]["framework"] == "crewai"
    run, events = _run(api, "research", {"topic": "AI agents"})
    assert run["status"] == "succeeded", run
    types = [m["event"] for m in events]
    for expected in (
        "run.started",
        "agent.started",
        "task.started",
        "tool.called",
        "tool.result",
        "task.completed",
        "agent.completed",
        "log",
        "artifact",
        "run.completed",
    ):
        assert expected in types, types
    agents = {m["data"]["data"]["agent"] for m in events if m["event"] == "agent.started"}
    assert len(agents) == 2, agents
    tools = {m["data"]["data"]["tool"] for m in events if m["event"] == "tool.called"}
    assert tools, events
    assert isinstance(run["output"]["raw"], str) and run["output"]["raw"]
    names = [a["name"] for a in api.get(f"/v1/runs/{run['id']}/artifacts").json()["artifacts"]]
    assert "report.md" in names
    report = api.get(f"/v1/runs/{run['id']}/artifacts/report.md")
    assert report.status_code == 200 and report.text.strip()
    assert llm.chat_requests, "the crew never reached the LLM"


def test_langgraph_agent(api: httpx.Client, llm: FakeLLM):
    _configure(api, "graph", llm)
    dep = deploy(api, EXAMPLES / "langgraph-agent", "graph", timeout=600)
    assert dep["status"] == "ready", dep
    run, events = _run(api, "graph", {"topic": "AI agents"})
    assert run["status"] == "succeeded", run
    nodes = [m["data"]["data"]["task"] for m in events if m["event"] == "task.started"]
    assert {"research", "write"} <= set(nodes), nodes
    assert "tool.called" in [m["event"] for m in events]
    assert isinstance(run["output"], dict)


def test_plain_python_crew(api: httpx.Client):
    dep = deploy(api, EXAMPLES / "plain-python", "plain")
    assert dep["status"] == "ready", dep
    run, events = _run(api, "plain", {"topic": "AI agents"})
    assert run["status"] == "succeeded", run
    types = [m["event"] for m in events]
    assert "agent.started" in types and "tool.called" in types and "artifact" in types


def test_missing_api_key_fails_with_a_message_that_names_it(api: httpx.Client, llm: FakeLLM):
    deploy(api, EXAMPLES / "research-crew", "nokey", timeout=FRAMEWORK_BUILD_S)
    run, _events = _run(api, "nokey", {"topic": "x"})
    assert run["status"] == "failed"
    assert "OPENAI_API_KEY" in run["error_message"]


def test_both_layouts_at_once_is_refused(api: httpx.Client, tmp_path):
    crew = write_crew(tmp_path / "both", "def run(i):\n    return i\n")
    (crew / "crewyard.toml").unlink()
    (crew / "crewship.toml").write_text(
        '[deployment]\nframework = "python"\nentrypoint = "crew:run"\n\n'
        '[deployments.x]\nframework = "python"\nentrypoint = "crew:run"\n'
    )
    r = api.post(
        "/v1/projects/both/deployments", content=pack(crew), headers={"Content-Type": "application/gzip"}
    )
    assert r.status_code == 400
    assert "not both" in r.json()["error"]["message"]


def test_multi_deployment_file_deploys_by_name(api: httpx.Client, tmp_path):
    crew = write_crew(tmp_path / "multi", "def a(i):\n    return 'a'\n\ndef b(i):\n    return 'b'\n")
    (crew / "crewyard.toml").write_text(
        '[deployments.alpha]\nframework = "python"\nentrypoint = "crew:a"\n\n'
        '[deployments.beta]\nframework = "python"\nentrypoint = "crew:b"\n'
    )
    r = api.post(
        "/v1/projects/multi/deployments", content=pack(crew), headers={"Content-Type": "application/gzip"}
    )
    assert r.status_code == 400 and "--name" in r.json()["error"]["message"]
    dep = deploy(api, crew, "multi", name="beta")
    run = wait_run(api, api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"])
    assert run["output"] == "b"


def test_missing_dependency_names_the_module(api: httpx.Client, tmp_path):
    crew = write_crew(tmp_path / "needs", "import yaml_that_is_missing\n\ndef run(i):\n    return i\n")
    dep = deploy(api, crew, "needs")
    run = wait_run(api, api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"])
    assert run["status"] == "failed"
    assert "yaml_that_is_missing" in run["error_message"]


def test_a_crewai_crew_remembers_its_thread(api: httpx.Client, llm: FakeLLM):
    """The thread convention with CrewAI: the state in the input, left through the helper."""
    _configure(api, "crewchat", llm)
    dep = deploy(api, EXAMPLES / "crewai-chat", "crewchat", timeout=FRAMEWORK_BUILD_S)
    assert dep["status"] == "ready", dep
    tid = api.post("/v1/threads", json={"project": "crewchat"}).json()["thread_id"]
    for message in ("hello", "and then?"):
        run_id = api.post(f"/v1/threads/{tid}/runs", json={"input": {"message": message}}).json()["run_id"]
        assert wait_run(api, run_id, timeout=180)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while api.get(f"/v1/threads/{tid}").json()["status"] == "busy" and time.monotonic() < deadline:
            time.sleep(0.1)
    said = api.get(f"/v1/threads/{tid}").json()["values"]["said"]
    assert len(said) == 2 and "hello" in said[0] and said[0] in said[1]  # the second knew the first
