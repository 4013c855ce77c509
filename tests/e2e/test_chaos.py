"""Chaos: 50 runs while runners, the projector, the gateway and nats-server itself are killed -9
and restarted at random moments, and a tenth of the runs are canceled. Afterwards every run has
exactly one terminal event, no event id appears twice, every SSE client that reconnected saw
every event of its run once and in order, the read model equals a fresh rebuild, and no crew
process is left behind."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from platform_checks import TERMINAL, Follower, call, read_model_equals_rebuild, stream_contents

from crewyard.testing.api import write_crew
from crewyard.testing.cluster import Cluster, crew_processes

CHATTY = """
import time
from crewyard_runtime import emit

def run(inputs):
    for i in range(int(inputs.get("n", 20))):
        emit("tool.called", tool="step", input={"i": i})
        print("step", i, flush=True)
        time.sleep(0.1)
    return {"steps": inputs.get("n", 20)}
"""
RUNS = 50
THREADS = 3

pytestmark = pytest.mark.timeout(900)


def test_chaos(tmp_path: Path):
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    rnd = random.Random(seed)
    print(f"chaos seed {seed}")
    cluster = Cluster(
        tmp_path,
        runners=2,
        env={
            "CREWYARD_RUNNER_ACK_WAIT": "3",
            "CREWYARD_RUNNER_LEASE": "20",
            "CREWYARD_RETRY_MAX_ATTEMPTS": "20",
            "CREWYARD_RETRY_BACKOFF": "0.5",
            "CREWYARD_RUNNER_CONCURRENCY": "4",
            "CREWYARD_CANCEL_GRACE": "2",
            "CREWYARD_THREAD_KEEPER_INTERVAL": "1",
        },
    ).up()
    # Stopped before the cluster goes down, also when the test fails: a blow after that
    # would start a piece again that nothing stops.
    stop_chaos = threading.Event()
    monkey: threading.Thread | None = None
    try:
        # Generous: on a loaded machine each restart of a piece takes seconds, and the blows go on
        # while the runs are posted; a run that is really stuck stays stuck however long we wait.
        deadline = time.monotonic() + 600
        api, key = cluster.api, cluster.admin_key
        crew = write_crew(tmp_path / "chatty", CHATTY)
        from crewyard.packaging import pack

        dep = call(
            "POST",
            f"{api}/v1/projects/chaos/deployments",
            deadline,
            content=pack(crew),
            headers={"Content-Type": "application/gzip"},
            key=key,
        ).json()
        while (
            call("GET", f"{api}/v1/deployments/{dep['deployment_id']}", deadline, key=key).json()["status"]
            == "building"
        ):
            time.sleep(0.2)

        run_ids: list[str] = []
        # Threads run too: none may be left busy, whatever was killed while its run ran.
        threads = [
            call(
                "POST", f"{api}/v1/threads", deadline, json={"deployment_id": dep["deployment_id"]}, key=key
            ).json()["thread_id"]
            for _ in range(THREADS)
        ]
        followers: list[Follower] = []
        cut_streams = threading.Event()
        victims = ["runner1", "runner2", "projector", "gateway", "nats"]

        def back_up(victim: str) -> None:
            """Until the restarted piece serves again: on a loaded machine a start takes many
            seconds, and blows faster than that would keep the platform down, not test it."""
            if victim == "nats":
                return  # started once it answers its health check
            while time.monotonic() < deadline and not stop_chaos.is_set():
                try:
                    if cluster.readyz(victim).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)

        def chaos() -> None:
            # Every piece goes down at least once (in random order), then random blows.
            first = rnd.sample(victims, len(victims))
            while not stop_chaos.wait(rnd.uniform(1.5, 3.5)):
                victim = first.pop() if first else rnd.choice(victims)
                if victim == "gateway" and any(not f.done for f in list(followers)):
                    cut_streams.set()  # a follower is connected to it now: it must reconnect
                cluster.kill(victim)
                time.sleep(rnd.uniform(0.2, 1.5))
                cluster.start(victim)
                back_up(victim)

        monkey = threading.Thread(target=chaos, daemon=True)
        monkey.start()
        to_cancel = set(rnd.sample(range(RUNS), RUNS // 10))
        cancels: list[threading.Timer] = []
        for i in range(RUNS):
            r = call(
                "POST",
                f"{api}/v1/runs",
                deadline,
                json={"deployment_id": dep["deployment_id"], "input": {"n": 30}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
                key=key,
            )
            assert r.status_code in (200, 202), r.text
            run_ids.append(r.json()["id"])
            if i in to_cancel:  # a random tenth is canceled, pending or running
                url = f"{api}/v1/runs/{run_ids[-1]}/cancel"
                timer = threading.Timer(rnd.uniform(0, 1.5), call, ("POST", url, deadline), {"key": key})
                timer.start()
                cancels.append(timer)
            if i % 4 == 0:  # a run in one of the threads (409 while it runs the last one)
                tid = threads[(i // 4) % THREADS]
                r = call("POST", f"{api}/v1/threads/{tid}/runs", deadline, json={"input": {"n": 5}}, key=key)
                assert r.status_code in (202, 409), r.text
                if r.status_code == 202:
                    run_ids.append(r.json()["run_id"])
            if i % 2 == 0:
                follower = Follower(api, run_ids[-1], deadline, key)
                follower.start()
                followers.append(follower)
            time.sleep(rnd.uniform(0.05, 0.4))
        for timer in cancels:
            timer.join()
        time.sleep(8)
        stop_chaos.set()
        monkey.join()
        for name in ["nats", *cluster.names]:  # everything up again after the last blow
            if name == "nats" and cluster.nats.proc is not None and cluster.nats.proc.poll() is None:
                continue
            if name != "nats" and cluster.procs[name].poll() is None:
                continue
            cluster.start(name)
        cluster.wait_healthy()

        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {
                r: call("GET", f"{api}/v1/runs/{r}", deadline, key=key).json()["status"] for r in run_ids
            }
            if all(s in ("succeeded", "failed", "canceled") for s in statuses.values()):
                break
            time.sleep(1)
        stuck = {r: s for r, s in statuses.items() if s not in ("succeeded", "failed", "canceled")}
        assert not stuck, f"runs not finished: {stuck}"
        busy: dict[str, dict] = {}
        while time.monotonic() < deadline:  # every thread ends up as its last run left it
            views = {t: call("GET", f"{api}/v1/threads/{t}", deadline, key=key).json() for t in threads}
            busy = {t: v for t, v in views.items() if v["status"] == "busy"}
            if not busy:
                break
            time.sleep(1)
        assert not busy, f"threads left busy: {busy}"
        listed = call("GET", f"{api}/v1/runs", deadline, params={"limit": 500}, key=key).json()["runs"]
        for tid, view in views.items():
            mine = sorted((r for r in listed if r["thread_id"] == tid), key=lambda r: r["id"])
            assert mine and all(r["status"] in ("succeeded", "failed", "canceled") for r in mine), tid
            expected = "idle" if mine[-1]["status"] == "succeeded" else "error"
            assert view["status"] == expected, (tid, view, mine[-1])
        for follower in followers:
            follower.join(timeout=max(1, deadline - time.monotonic()))

        events = stream_contents(cluster.nats_url, cluster.creds_dir)
        ids = [e[2]["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event id appears twice in the stream"
        per_run: dict[str, list[tuple[int, str, str]]] = {}
        for seq, _subject, env in events:
            if env["aggregate"] == "run":
                per_run.setdefault(env["aggregate_id"], []).append((seq, env["id"], env["type"]))
        for run_id in run_ids:
            terminal = [t for _, _, t in per_run[run_id] if t in TERMINAL]
            assert len(terminal) == 1, (run_id, terminal)
        for follower in followers:
            assert follower.done, f"follower of {follower.run_id} never saw the end"
            expected = [(seq, eid) for seq, eid, _ in per_run[follower.run_id]]
            assert follower.seen == expected, follower.run_id
        if cut_streams.is_set():  # (on a slow machine every follower may be done by then)
            assert sum(f.reconnects for f in followers) > 0, "a gateway went down, no stream noticed"

        canceled = sum(s == "canceled" for s in statuses.values())
        assert canceled >= 1 and sum(s == "succeeded" for s in statuses.values()) >= RUNS // 2, statuses

        cluster.stop("gateway")
        cluster.stop("projector")
        read_model_equals_rebuild(cluster.data_dir("gateway"), cluster.nats_url, cluster.creds_dir)
    finally:
        stop_chaos.set()
        if monkey is not None:
            monkey.join()
        cluster.down()
    # Crews die with their runner: a killed one's at once, a stopped one's as it shuts down.
    left = crew_processes(tmp_path)
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = crew_processes(tmp_path)
    assert left == [], "crew processes left behind"
