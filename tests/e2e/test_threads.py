"""Threads end to end: a LangGraph chat graph written for LangGraph Platform deployed unchanged
(its conversation accumulates over runs, one checkpoint each; an ``interrupt()`` resumes with the
next run; a copy diverges), plain Python and CrewAI crews keeping state by the convention, one
run at a time (twenty simultaneous starts, one 202), a start cut off between its two writes
settles by itself, crews writing tables, thread runs in warm sandboxes and in the environment
they ask for, the CLI, and a rebuild that reproduces it all."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StreamSettings, connect
from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run, write_crew
from crewyard.testing.fakellm import FakeLLM
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.readmodels import assert_rebuild_equals_live
from crewyard.threads import accept_run, load_thread, queue_run
from crewyard.versions import resolve_version


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A platform whose thread keeper looks often (a cut-off start settles within seconds)."""
    env = {"CREWYARD_THREAD_KEEPER_INTERVAL": "0.5", "CREWYARD_THREAD_CLAIM_CHECKS": "4"}
    p = PlatformProcess(tmp_path_factory.mktemp("threads"), env=env)
    p.start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def _say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def _settled(api: httpx.Client, thread_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        thread = api.get(f"/v1/threads/{thread_id}").json()
        if thread["status"] != "busy":
            return dict(thread)
        time.sleep(0.1)
    raise AssertionError(f"thread {thread_id} still busy after {timeout}s")


def _run(api: httpx.Client, thread_id: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"/v1/threads/{thread_id}/runs", json=body)
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["thread_id"] == thread_id and started["version_id"].startswith("ver_")
    run = wait_run(api, started["run_id"], timeout=180)
    assert run["status"] == "succeeded", run
    assert run["thread_id"] == thread_id and run["version_number"] == started["version_number"]
    return _settled(api, thread_id)


def test_a_langgraph_platform_chat_graph_keeps_its_conversation(api: httpx.Client, llm: FakeLLM):
    for key, value in (("OPENAI_BASE_URL", llm.base_url), ("OPENAI_API_KEY", "sk-fake")):
        assert api.put(f"/v1/projects/chat/env/{key}", json={"value": value}).status_code == 200
    dep = deploy(api, EXAMPLES / "langgraph-chat", "chat", timeout=600)
    assert dep["status"] == "ready", dep
    thread = api.post("/v1/threads", json={"project": "chat", "metadata": {"user": "u1"}}).json()
    tid = thread["thread_id"]
    assert thread["status"] == "idle" and thread["metadata"] == {"user": "u1"}

    _run(api, tid, {"input": _say("hello")})
    _run(api, tid, {"input": _say("how are you?")})
    waiting = _run(api, tid, {"input": _say("please review my plan")})
    assert waiting["status"] == "interrupted"
    assert [m["role"] for m in waiting["values"]["messages"]] == ["user", "assistant"] * 3
    history = api.get(f"/v1/threads/{tid}/history").json()
    assert history["total"] == 3 and len(history["history"]) == 3
    assert [len(h["values"]["messages"]) for h in history["history"]] == [6, 4, 2]  # newest first
    assert history["history"][0]["interrupts"][0]["value"]["question"] == "Send this answer?"
    full = api.get(f"/v1/threads/{tid}/history", params={"full": "true", "limit": 1}).json()["history"][0]
    assert full["checkpoint"]["format"] == "langgraph"

    # A copy starts where the thread is (interrupted too) and goes its own way.
    copy = api.post(f"/v1/threads/{tid}/copy").json()
    assert (
        copy["status"] == "interrupted" and copy["copied_from"] == tid and copy["values"] == waiting["values"]
    )

    done = _run(api, tid, {"command": {"resume": "yes"}})
    assert done["status"] == "idle" and done["values"]["reviewed"] == "yes"
    assert done["values"]["messages"][-1]["content"] == "Reviewed: yes"
    other = _run(api, copy["thread_id"], {"input": {"answer": "no"}})
    assert other["values"]["reviewed"] == "no"
    assert api.get(f"/v1/threads/{tid}").json()["values"]["reviewed"] == "yes"
    assert api.get(f"/v1/threads/{tid}/history").json()["total"] == 4
    assert api.get(f"/v1/threads/{copy['thread_id']}/history").json()["total"] == 2


PLAIN = """
from crewyard_runtime import tables, thread

def helper(inputs):
    seen = thread.values().get("seen", [])
    thread.update(seen=[*seen, inputs["word"]])
    tables.insert("words", {"word": inputs["word"], "turn": len(seen) + 1})
    return {"turn": len(seen) + 1}

def convention(inputs):
    seen = inputs["thread"]["values"].get("seen", [])
    return {"thread": {"values": {"seen": [*seen, inputs["word"]]}}}

def slow(inputs):
    import time
    time.sleep(float(inputs.get("sleep", 0)))
    return {}

def big(inputs):
    thread.update(text=inputs["char"] * int(inputs["size"]))
    return {}
"""


@pytest.fixture(scope="module")
def plain(platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with platform.client(timeout=30) as api:
        yield _deploy_plain(api, tmp_path_factory.mktemp("plain"))


def _deploy_plain(api: httpx.Client, folder: Path) -> str:
    write_crew(folder, PLAIN, entrypoint="crew:helper")
    (folder / "crewyard.toml").write_text(
        "".join(
            f'[deployments.{name}]\nframework = "python"\nentrypoint = "crew:{name}"\n\n'
            for name in ("helper", "convention", "slow", "big")
        )
    )
    for name in ("helper", "convention", "slow", "big"):
        assert deploy(api, folder, "plain", name=name)["status"] == "ready"
    columns = [{"name": "word", "type": "text", "required": True}, {"name": "turn", "type": "number"}]
    assert (
        api.post("/v1/tables", json={"project": "plain", "name": "words", "columns": columns}).status_code
        == 201
    )
    return "plain"


def test_plain_crews_keep_state_by_helper_and_by_convention(api: httpx.Client, plain: str):
    for name in ("helper", "convention"):
        tid = api.post(
            "/v1/threads", json={"project": plain, "name": name, "values": {"seen": ["a"]}}
        ).json()["thread_id"]
        for word in ("b", "c"):
            _run(api, tid, {"input": {"word": word}})
        assert api.get(f"/v1/threads/{tid}").json()["values"] == {"seen": ["a", "b", "c"]}
        assert api.get(f"/v1/threads/{tid}/history").json()["total"] == 2
    # Rows the crew wrote are there after its runs, written by its run.
    table = api.get("/v1/tables", params={"project": plain}).json()["tables"][0]
    rows = api.get(f"/v1/tables/{table['id']}/rows", params={"sort": "turn"}).json()["rows"]
    assert [(r["word"], r["turn"]) for r in rows] == [("b", 2), ("c", 3)]
    assert all(r["_meta"]["created_by"].startswith("run:run_") for r in rows)


def _idle_sandboxes(api: httpx.Client, deployment_id: str) -> int:
    """Ready warm sandboxes of one deployment version, as the platform's metrics say."""
    pattern = rf'^crewyard_warm_sandboxes\{{deployment="{deployment_id}",state="idle"\}} (\S+)$'
    match = re.search(pattern, api.get("/metrics").text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def test_a_thread_run_in_a_warm_sandbox_starts_from_its_thread(api: httpx.Client, plain: str):
    """A warm sandbox is prepared before any run takes it; the thread comes with its start."""
    tid = api.post(
        "/v1/threads", json={"project": plain, "name": "convention", "values": {"seen": ["a"]}}
    ).json()["thread_id"]
    first = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "b"}}).json()
    dep_id = wait_run(api, first["run_id"])["deployment_id"]
    _settled(api, tid)
    deadline = time.monotonic() + 180
    while _idle_sandboxes(api, dep_id) < 1:
        assert time.monotonic() < deadline, "no warm sandbox came"
        time.sleep(0.2)
    second = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "c"}}).json()
    assert wait_run(api, second["run_id"])["status"] == "succeeded"
    events = sse_events(api, f"/v1/runs/{second['run_id']}/events")
    started = [e for e in events if e["event"] == "run.started"]
    assert started[-1]["data"]["data"].get("warm") is True
    assert _settled(api, tid)["values"] == {"seen": ["a", "b", "c"]}


def test_one_run_at_a_time_twenty_starts_one_accepted(
    api: httpx.Client, platform: PlatformProcess, plain: str
):
    tid = api.post("/v1/threads", json={"project": plain, "name": "slow"}).json()["thread_id"]

    # The accepted run outlasts all twenty requests however slow the machine (it is canceled
    # below): a run that ended before the last request came in would rightly let it start one.
    def start(_: int) -> httpx.Response:
        with platform.client(timeout=60) as client:
            return client.post(f"/v1/threads/{tid}/runs", json={"input": {"sleep": 300}})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(start, range(20)))
    accepted = [r for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code == 409]
    assert len(accepted) == 1 and len(refused) == 19, [r.status_code for r in answers]
    run_id = accepted[0].json()["run_id"]
    assert {r.json()["error"]["run_id"] for r in refused} == {run_id}
    assert {r.json()["error"]["code"] for r in refused} == {"thread_busy"}
    runs = api.get("/v1/runs", params={"project": plain, "limit": 500}).json()["runs"]
    assert [r["id"] for r in runs if r["thread_id"] == tid] == [run_id]  # nothing else was queued
    # The thread follows its runs over SSE; deleting a busy thread is refused.
    assert api.delete(f"/v1/threads/{tid}").status_code == 409
    assert api.post(f"/v1/runs/{run_id}/cancel").status_code in (200, 202)
    assert wait_run(api, run_id)["status"] == "canceled"
    assert _settled(api, tid)["status"] == "error"  # as after any run that did not succeed
    assert api.delete(f"/v1/threads/{tid}").status_code == 200
    assert api.get(f"/v1/threads/{tid}").status_code == 404


def test_a_start_cut_off_between_its_two_writes_settles_by_itself(
    api: httpx.Client, platform: PlatformProcess, plain: str
):
    """As a gateway killed between ``thread.run_accepted`` and ``run.queued`` leaves it."""
    tid = api.post("/v1/threads", json={"project": plain, "name": "convention"}).json()["thread_id"]
    lost_run = new_id("run")

    async def accept_only() -> None:
        nc = await connect(platform.nats_url, name="test-cut-off", creds=platform.creds())
        try:
            store = EventStore(nc, StreamSettings())
            state, _ = await load_thread(store, tid)
            await accept_run(store, state, lost_run)
        finally:
            await nc.drain()

    asyncio.run(accept_only())
    busy = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "x"}})
    assert busy.status_code == 409 and busy.json()["error"]["run_id"] == lost_run
    deadline = time.monotonic() + 60
    while api.get(f"/v1/threads/{tid}").json()["active_run_id"] != lost_run:  # the read model has it
        assert time.monotonic() < deadline
        time.sleep(0.1)
    freed = _settled(api, tid, timeout=120)  # the keeper frees it after a few looks
    assert freed["status"] == "idle" and freed["active_run_id"] is None

    async def queue_late() -> None:  # the stalled gateway wakes up: its run must not run
        nc = await connect(platform.nats_url, name="test-late", creds=platform.creds())
        try:
            store = EventStore(nc, StreamSettings())
            state, _ = await load_thread(store, tid)
            target = await resolve_version(store, project=plain, name="convention")
            await queue_run(store, state, lost_run, target, input={"word": "late"}, command=None)
        finally:
            await nc.drain()

    asyncio.run(queue_late())
    late = wait_run(api, lost_run)
    assert late["status"] == "failed" and "not running this run" in late["error_message"]
    _run(api, tid, {"input": {"word": "x"}})  # and the thread works again


def test_a_large_state_is_kept_in_the_object_store(api: httpx.Client, plain: str):
    tid = api.post("/v1/threads", json={"project": plain, "name": "big"}).json()["thread_id"]
    _run(api, tid, {"input": {"char": "a", "size": 400_000}})
    thread = api.get(f"/v1/threads/{tid}").json()
    assert len(thread["values"]["text"]) == 400_000
    # A listing leaves it out (a page of 100 such threads read every state whole).
    listed = api.get("/v1/threads", params={"project": plain, "name": "big"}).json()["threads"]
    assert [(t["thread_id"], t["values"]) for t in listed if t["thread_id"] == tid] == [(tid, None)]
    history = api.get(f"/v1/threads/{tid}/history").json()["history"]
    assert len(history[0]["values"]["text"]) == 400_000
    copy = api.post(f"/v1/threads/{tid}/copy").json()
    assert copy["values"] == thread["values"]
    _run(api, copy["thread_id"], {"input": {"char": "b", "size": 300_000}})  # diverges
    assert api.get(f"/v1/threads/{copy['thread_id']}").json()["values"]["text"][0] == "b"
    assert api.get(f"/v1/threads/{tid}").json()["values"]["text"][0] == "a"


VERSIONED = """
VERSION = {version!r}

def run(inputs):
    seen = inputs["thread"]["values"].get("seen", [])
    return {{"thread": {{"values": {{"seen": [*seen, VERSION]}}}}}}
"""


def test_a_thread_runs_the_version_of_the_environment_it_asks_for(api: httpx.Client, tmp_path: Path):
    """One conversation, two environments: production's version by default, staging's on request;
    the state carries over between them."""
    one = deploy(api, write_crew(tmp_path / "one", VERSIONED.format(version="one")), "threadenv")
    two = deploy(
        api, write_crew(tmp_path / "two", VERSIONED.format(version="two")), "threadenv", environment="staging"
    )
    assert (one["version_number"], two["version_number"]) == (1, 2)
    tid = api.post("/v1/threads", json={"project": "threadenv"}).json()["thread_id"]
    assert _run(api, tid, {"input": {}})["values"] == {"seen": ["one"]}
    staged = api.post(f"/v1/threads/{tid}/runs", json={"input": {}, "environment": "staging"})
    assert staged.status_code == 202 and staged.json()["version_number"] == 2, staged.text
    assert wait_run(api, staged.json()["run_id"])["status"] == "succeeded"
    assert _settled(api, tid)["values"] == {"seen": ["one", "two"]}
    unknown = api.post(f"/v1/threads/{tid}/runs", json={"input": {}, "environment": "nowhere"})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"], unknown.text


def test_the_thread_stream_follows_every_run(api: httpx.Client, plain: str):
    tid = api.post("/v1/threads", json={"project": plain, "name": "convention"}).json()["thread_id"]
    first = _run(api, tid, {"input": {"word": "1"}})
    assert first["status"] == "idle"
    second = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "2"}}).json()
    wait_run(api, second["run_id"])
    _settled(api, tid)

    def both_ended(seen: list[dict]) -> bool:
        return [m["event"] for m in seen].count("thread.run_ended") == 2

    events = sse_events(api, f"/v1/threads/{tid}/events?after=0", until=both_ended)
    types = [m["event"] for m in events]
    assert types[0] == "thread.created"
    assert types.count("thread.run_accepted") == 2 and types.count("run.completed") == 2
    assert types.count("thread.checkpointed") == 2 and types.count("thread.run_ended") == 2


def test_rebuild_reproduces_threads_checkpoints_tables_and_versions(
    platform: PlatformProcess, tmp_path: Path
):
    assert_rebuild_equals_live(platform.nats_url, platform.data_dir, tmp_path / "rebuilt.sqlite3")


def _cli(platform: PlatformProcess, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from crewyard.cli import cli

    env = {"CREWYARD_API": platform.api, "CREWYARD_API_KEY": platform.admin_key, "COLUMNS": "200"}
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_the_cli_creates_runs_and_reads_threads(platform: PlatformProcess, plain: str):
    code, out = _cli(platform, "threads", "create", "-p", plain, "-n", "helper", "--json")
    assert code == 0, out
    tid = json.loads(out)["thread_id"]
    code, out = _cli(platform, "invoke", "--thread", tid, "-i", '{"word": "cli"}', "--stream")
    assert code == 0 and "Run completed" in out, out
    code, out = _cli(platform, "threads", "run", tid, "-i", '{"word": "again"}', "--json")
    assert code == 0, out
    with platform.client(timeout=30) as api:
        wait_run(api, json.loads(out)["run_id"])
        assert _settled(api, tid)["values"] == {"seen": ["cli", "again"]}
    code, out = _cli(platform, "threads", "history", tid)
    assert code == 0 and "2 checkpoints" in out, out
    code, out = _cli(platform, "threads", "list", "-p", plain, "--status", "idle")
    assert code == 0 and tid in out, out
    code, out = _cli(platform, "threads", "copy", tid, "--json")
    copied = json.loads(out)["thread_id"]
    code, out = _cli(platform, "threads", "get", copied)
    assert code == 0 and "again" in out, out
    code, out = _cli(platform, "threads", "delete", copied)
    assert code == 0 and "deleted" in out
    code, out = _cli(platform, "threads", "get", copied)
    assert code == 1 and "not found" in out, out
    code, out = _cli(platform, "threads", "copy", tid, "--json")
    assert code == 0, out
    copied = json.loads(out)
    assert copied["copied_from"] == tid and copied["values"] == {"seen": ["cli", "again"]}
    code, out = _cli(platform, "threads", "get", copied["thread_id"], "--json")
    assert code == 0 and json.loads(out)["status"] == "idle", out
    code, out = _cli(platform, "threads", "list", "-p", plain, "-n", "helper", "--json")
    assert code == 0, out
    assert {tid, copied["thread_id"]} <= {t["thread_id"] for t in json.loads(out)["threads"]}
    code, out = _cli(platform, "threads", "delete", copied["thread_id"])
    assert code == 0 and "deleted" in out, out
    code, out = _cli(platform, "threads", "get", copied["thread_id"])
    assert code != 0 and "not found" in out and "Traceback" not in out, out
