"""A run lifecycle you can trust: cancel, timeouts, idempotency, retries, concurrency limits, a
thread whose runner was killed."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from crewyard.client import tls_context
from crewyard.packaging import pack
from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.processes import alive

SLOW = """
import os, time
from crewyard_runtime import artifacts_dir, emit

def run(inputs):
    (artifacts_dir() / "started.txt").write_text(str(os.getpid()))
    print("pid", os.getpid(), flush=True)
    for i in range(int(inputs.get("steps", 100))):
        emit("tool.called", tool="tick", input={"i": i})
        time.sleep(float(inputs.get("step", 0.1)))
    return {"done": True}
"""

TERMINAL = ("run.completed", "run.failed", "run.canceled")


def _types(api: httpx.Client, run_id: str) -> list[str]:
    return [m["event"] for m in sse_events(api, f"/v1/runs/{run_id}/events")]


@pytest.fixture(scope="module")
def slow(platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> dict:
    with platform.client(timeout=30) as api:
        return deploy(api, write_crew(tmp_path_factory.mktemp("slow"), SLOW), "slow")


def _invoke(api: httpx.Client, dep: dict, **payload) -> str:
    r = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"], "input": payload})
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


def test_cancel_a_running_run_kills_it_and_keeps_its_artifacts(api: httpx.Client, slow: dict):
    run_id = _invoke(api, slow, steps=600)
    deadline = time.monotonic() + 30
    while api.get(f"/v1/runs/{run_id}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    events = sse_events(api, f"/v1/runs/{run_id}/events", stop_after=6)
    assert any(m["event"] == "log" for m in events)
    r = api.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["success"] is True
    run = wait_run(api, run_id, timeout=30)
    assert run["status"] == "canceled" and run["completed_at"]
    types = _types(api, run_id)
    assert [t for t in types if t in TERMINAL] == ["run.canceled"]
    assert "run.cancel_requested" in types
    arts = api.get(f"/v1/runs/{run_id}/artifacts").json()["artifacts"]
    assert [a["name"] for a in arts] == ["started.txt"]
    pid = int(api.get(f"/v1/runs/{run_id}/artifacts/started.txt").text)
    assert not alive(pid)


def test_cancel_a_finished_run_is_a_400(api: httpx.Client, slow: dict):
    run_id = _invoke(api, slow, steps=1, step=0)
    assert wait_run(api, run_id)["status"] == "succeeded"
    r = api.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 400
    assert r.json() == {
        "error": {"code": "bad_request", "message": "Cannot cancel run with status: succeeded"}
    }


def test_cancel_right_after_invoke_is_never_lost(api: httpx.Client, slow: dict):
    run_ids = []
    for i in range(15):
        run_id = _invoke(api, slow, steps=200)
        if i % 3:
            time.sleep(0.01 * i)  # some cancels land while the runner is starting the run
        assert api.post(f"/v1/runs/{run_id}/cancel").status_code == 200
        run_ids.append(run_id)
    for run_id in run_ids:
        assert wait_run(api, run_id, timeout=60)["status"] == "canceled"
        types = _types(api, run_id)
        assert [t for t in types if t in TERMINAL] == ["run.canceled"], types
        assert "run.completed" not in types


def test_canceled_pending_run_never_starts(api: httpx.Client, tmp_path: Path):
    crew = write_crew(tmp_path / "one", SLOW, extra_toml="max_concurrent_runs = 1\n")
    dep = deploy(api, crew, "one-at-a-time")
    first = _invoke(api, dep, steps=40)
    second = _invoke(api, dep, steps=1)
    time.sleep(0.5)
    assert api.get(f"/v1/runs/{second}").json()["status"] == "pending"
    assert api.post(f"/v1/runs/{second}/cancel").json()["status"] == "canceled"
    api.post(f"/v1/runs/{first}/cancel")
    assert wait_run(api, second)["status"] == "canceled"
    assert "run.started" not in _types(api, second)


def test_timeouts_per_run_and_per_deployment(api: httpx.Client, slow: dict, tmp_path: Path):
    r = api.post(
        "/v1/runs", json={"deployment_id": slow["deployment_id"], "input": {"steps": 600}, "timeout_s": 1}
    )
    run = wait_run(api, r.json()["run_id"], timeout=30)
    assert run["status"] == "failed" and "timed out after 1s" in run["error_message"]
    crew = write_crew(tmp_path / "short", SLOW, extra_toml="timeout = 1\n")
    dep = deploy(api, crew, "short-timeout")
    run = wait_run(api, _invoke(api, dep, steps=600), timeout=30)
    assert run["status"] == "failed" and "timed out" in run["error_message"]


def test_idempotency_key(api: httpx.Client, slow: dict):
    key = str(uuid.uuid4())
    body = {"deployment_id": slow["deployment_id"], "input": {"steps": 1, "step": 0}}
    first = api.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    again = api.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["run_id"]
    other = api.post("/v1/runs", json={**body, "input": {"steps": 2}}, headers={"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"

    racing_key = str(uuid.uuid4())

    def post() -> str:
        with httpx.Client(
            base_url=str(api.base_url), headers=api.headers, timeout=30, verify=tls_context()
        ) as c:
            resp = c.post("/v1/runs", json=body, headers={"Idempotency-Key": racing_key})
            assert resp.status_code in (200, 202), resp.text
            return str(resp.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: post(), range(8)))
    assert len(ids) == 1
    runs = api.get("/v1/runs", params={"limit": 500}).json()["runs"]
    assert sum(1 for r in runs if r["id"] in ids) == 1


def test_idempotency_key_of_an_upload(api: httpx.Client, tmp_path: Path):
    """A repeated upload with the same key is the deployment the first made (200), also when the
    repeats race; the same key with another source or environment is refused, nothing made."""
    crew = write_crew(tmp_path / "idem", SLOW)
    url, gz = "/v1/projects/idem-upload/deployments", {"Content-Type": "application/gzip"}
    key = {**gz, "Idempotency-Key": str(uuid.uuid4())}
    first = api.post(url, content=pack(crew), headers=key)
    again = api.post(url, content=pack(crew), headers=key)
    assert first.status_code == 202 and again.status_code == 200, (first.text, again.text)
    assert again.json()["deployment_id"] == first.json()["deployment_id"]
    (crew / "extra.py").write_text("X = 1\n")
    for other, params in ((pack(crew), None), (again.request.content, {"environment": "staging"})):
        refused = api.post(url, content=other, headers=key, params=params)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == {
            "code": "idempotency_key_reused",
            "message": "this Idempotency-Key was used with a different upload",
        }

    racing = {**gz, "Idempotency-Key": str(uuid.uuid4())}

    def post() -> str:
        with httpx.Client(
            base_url=str(api.base_url), headers=api.headers, timeout=60, verify=tls_context()
        ) as c:
            resp = c.post(url, content=pack(crew), headers=racing)
            assert resp.status_code in (200, 202), resp.text
            return str(resp.json()["deployment_id"])

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(lambda _: post(), range(6)))
    assert len(ids) == 1
    made = api.get(url).json()["deployments"]
    assert sorted(d["deployment_id"] for d in made) == sorted([first.json()["deployment_id"], *ids])


def _most_at_once(runs: list[dict]) -> int:
    """How many of these ended runs were running at once, from their own start and end times
    (a poll of one run after another is no snapshot: a run can end and the next start between
    two reads, and the poll would see both running)."""
    spans = [
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["completed_at"])) for r in runs
    ]
    return max(sum(s <= start < e for s, e in spans) for start, _ in spans)


def test_concurrency_limit_holds_and_runs_start_in_order(api: httpx.Client, tmp_path: Path):
    crew = write_crew(tmp_path / "limited", SLOW, extra_toml="max_concurrent_runs = 2\n")
    dep = deploy(api, crew, "limited")
    run_ids = [_invoke(api, dep, steps=5, step=0.1) for _ in range(6)]
    runs = [wait_run(api, r, timeout=90) for r in run_ids]
    assert all(r["status"] == "succeeded" for r in runs), runs
    assert 1 <= _most_at_once(runs) <= 2, runs
    started = [r["started_at"] for r in runs]
    assert started == sorted(started)


def test_project_limit(api: httpx.Client, slow: dict):
    assert api.put("/v1/projects/slow/limits", json={"max_concurrent_runs": 0}).status_code == 400
    assert api.put("/v1/projects/slow/limits", json={"max_concurrent_runs": 1}).status_code == 200
    try:
        run_ids = [_invoke(api, slow, steps=3, step=0.1) for _ in range(3)]
        runs = [wait_run(api, r, timeout=90) for r in run_ids]
        assert all(r["status"] == "succeeded" for r in runs), runs
        assert _most_at_once(runs) == 1, runs
    finally:
        api.put("/v1/projects/slow/limits", json={"max_concurrent_runs": None})


def test_cancel_on_disconnect(api: httpx.Client, slow: dict):
    run_id = _invoke(api, slow, steps=600)
    sse_events(api, f"/v1/runs/{run_id}/events?cancel_on_disconnect=true", stop_after=3)
    assert wait_run(api, run_id, timeout=30)["status"] == "canceled"


#: The runners' short acknowledgement wait and lease (every runner of this module has these).
APART = {"CREWYARD_RUNNER_ACK_WAIT": "2", "CREWYARD_RUNNER_LEASE": "6"}


@pytest.fixture(scope="module")
def runnerless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A platform without a runner, shared by the tests that start theirs apart (every setting
    they vary is the runners' own); each test's runs have ended before it does."""
    platform = PlatformProcess(
        tmp_path_factory.mktemp("runnerless"),
        env={**APART, "CREWYARD_SERVICES": "builder,projector,gateway"},
    )
    platform.start()
    yield platform
    platform.stop()


@contextlib.contextmanager
def _runners_apart(
    platform: PlatformProcess, tmp_path: Path, **settings: str
) -> Iterator[tuple[PlatformProcess, Callable[[str], subprocess.Popen]]]:
    """The runner-less platform, and ``runner(name)`` starting a runner in a process group of its
    own (short acknowledgement wait and lease; an id no other test's runner had);
    whatever is left of them is stopped at the end."""
    env = {**os.environ, **APART, **settings}
    started: list[subprocess.Popen] = []
    code = (
        "import asyncio,sys; from crewyard import platform, settings;"
        "asyncio.run(platform.run_service('runner', settings.load(sys.argv[1], nats_url=sys.argv[2],"
        " backend='process')))"
    )

    def runner(name: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / name), platform.nats_url],
            env={
                **env,
                "CREWYARD_NATS_CREDS": str(platform.creds("runner")),
                "CREWYARD_RUNNER_ID": f"{name}-{uuid.uuid4().hex[:8]}",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    try:
        yield platform, runner
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)  # a stopped one cannot take its SIGTERM
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)


@pytest.mark.parametrize(("attempts", "expected"), [(3, "succeeded"), (1, "failed")])
def test_a_killed_runner_is_recovered(
    runnerless: PlatformProcess, tmp_path: Path, attempts: int, expected: str
):
    # The rescuer takes the run over once the doomed runner's lease (6 s) ran out.
    settings = {"CREWYARD_RETRY_BACKOFF": "0.2", "CREWYARD_RETRY_MAX_ATTEMPTS": str(attempts)}
    with _runners_apart(runnerless, tmp_path, **settings) as (platform, runner):
        first = runner("doomed")
        with platform.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "crew", SLOW), "recover")
            run_id = _invoke(api, dep, steps=15, step=0.1)
            deadline = time.monotonic() + 30
            while api.get(f"/v1/runs/{run_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            runner("rescuer")
            run = wait_run(api, run_id, timeout=60)
            assert run["status"] == expected, run
            events = sse_events(api, f"/v1/runs/{run_id}/events")
            types = [m["event"] for m in events]
            assert len([t for t in types if t in TERMINAL]) == 1
            if expected == "succeeded":
                assert types.count("run.started") == 2 and types.count("run.retrying") == 1
                attempts_seen = [m["data"]["data"]["attempt"] for m in events if m["event"] == "run.started"]
                assert attempts_seen == [1, 2]
            else:
                assert "runner_lost" in str(events[-1]["data"]["data"]) or "lost" in run["error_message"]


TICKS = """
import os, time

def run(inputs):
    again = os.path.exists(inputs["ticks"])  # a later attempt: it need not be long
    with open(inputs["ticks"], "a", buffering=1) as out:
        for _ in range(int(inputs["steps_again" if again else "steps"])):
            out.write(f"{os.getpid()} {time.time()}\\n")
            time.sleep(0.1)
    return {"done": True}
"""


def _ticks(path: Path) -> list[tuple[int, float]]:
    """(pid, time) of every whole line the crews wrote so far."""
    text = path.read_text() if path.exists() else ""
    return [(int(p), float(t)) for p, t in (line.split() for line in text.splitlines()[:-1] or [])]


@pytest.mark.parametrize("rescued", [True, False], ids=["another runner takes over", "its runner comes back"])
def test_a_stalled_runners_crew_ends_before_its_run_can_be_taken_over(
    runnerless: PlatformProcess, tmp_path: Path, rescued: bool
):
    """SIGSTOP of the runner running a run (a frozen machine, a process swapped out): the runner
    fences nothing, so the crew's runtime stops itself when the keepalives stop, before another
    runner may take the run over (or its own runner, back, retries it): never two crews at once."""
    ticks = tmp_path / "ticks.txt"
    settings = {"CREWYARD_RETRY_BACKOFF": "0.2", "CREWYARD_RETRY_MAX_ATTEMPTS": "3"}
    with _runners_apart(runnerless, tmp_path, **settings) as (platform, runner):
        first = runner("stalled")
        with platform.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "crew", TICKS), "stall")
            run_id = _invoke(api, dep, ticks=str(ticks), steps=120, steps_again=10)
            deadline = time.monotonic() + 60
            while len(_ticks(ticks)) < 15:  # 1.5 s in: past the first keepalives (every 0.5 s)
                assert time.monotonic() < deadline, "the run did not start"
                time.sleep(0.05)
            crew = _ticks(ticks)[0][0]
            os.killpg(first.pid, signal.SIGSTOP)
            stopped_at = time.time()
            if rescued:
                runner("rescuer")
                deadline = time.monotonic() + 60
                while all(pid == crew for pid, _ in _ticks(ticks)):
                    assert time.monotonic() < deadline, "no other runner took the run over"
                    time.sleep(0.05)
            else:
                time.sleep(8)  # past the lease: another runner could have taken it
            assert not alive(crew), "the stalled runner's crew still runs"
            os.killpg(first.pid, signal.SIGCONT)

            run = wait_run(api, run_id, timeout=90)
            assert run["status"] == "succeeded", run
            types = _types(api, run_id)
            assert len([t for t in types if t in TERMINAL]) == 1
            assert types.count("run.started") == 2 and types.count("run.retrying") == 1, types
        seen = _ticks(ticks)
        pids = list(dict.fromkeys(pid for pid, _ in seen))
        assert len(pids) == 2 and pids[0] == crew, pids
        last_of_first = max(t for pid, t in seen if pid == crew)
        assert last_of_first < min(t for pid, t in seen if pid == pids[1]), "the two crews ran at once"
        assert last_of_first - stopped_at < 6, "the crew went on past its runner's lease"


THREADED = """
import time
from crewyard_runtime import thread

def run(inputs):
    seen = thread.values().get("seen", [])
    for _ in range(int(inputs.get("steps", 0))):
        time.sleep(0.1)
    thread.update(seen=[*seen, inputs["word"]])
    return {"seen": len(seen)}
"""


def _thread_settled(api: httpx.Client, thread_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        thread = api.get(f"/v1/threads/{thread_id}").json()
        if thread["status"] != "busy":
            return dict(thread)
        time.sleep(0.1)
    raise AssertionError(f"thread {thread_id} still busy after {timeout}s")


def test_a_thread_whose_runner_was_killed_is_not_left_busy(runnerless: PlatformProcess, tmp_path: Path):
    """kill -9 of the runner running a thread's run: the run fails (no retries), the thread goes
    to ``error`` by itself with the state of its last checkpoint, and its next run starts there."""
    settings = {"CREWYARD_RETRY_MAX_ATTEMPTS": "1", "CREWYARD_THREAD_KEEPER_INTERVAL": "0.5"}
    with _runners_apart(runnerless, tmp_path, **settings) as (platform, runner):
        first = runner("doomed")
        with platform.client(timeout=30) as api:
            deploy(api, write_crew(tmp_path / "crew", THREADED), "kept")
            tid = api.post("/v1/threads", json={"project": "kept"}).json()["thread_id"]
            ok = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "a"}}).json()
            assert wait_run(api, ok["run_id"])["status"] == "succeeded"
            assert _thread_settled(api, tid)["values"] == {"seen": ["a"]}

            doomed = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "b", "steps": 300}})
            assert doomed.status_code == 202, doomed.text
            run_id = doomed.json()["run_id"]
            deadline = time.monotonic() + 60
            while api.get(f"/v1/runs/{run_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            runner("rescuer")
            assert wait_run(api, run_id, timeout=90)["status"] == "failed"
            thread = _thread_settled(api, tid)
            assert thread["status"] == "error" and thread["active_run_id"] is None, thread
            assert thread["values"] == {"seen": ["a"]}  # the lost run left nothing

            again = api.post(f"/v1/threads/{tid}/runs", json={"input": {"word": "c"}})
            assert again.status_code == 202, again.text
            third = wait_run(api, again.json()["run_id"])
            assert third["status"] == "succeeded", third
            thread = _thread_settled(api, tid)
            assert thread["status"] == "idle" and thread["values"] == {"seen": ["a", "c"]}, thread
