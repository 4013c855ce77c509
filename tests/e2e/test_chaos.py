"""Chaos: 50 runs while runners, the projector, the gateway and nats-server itself are killed -9
and restarted at random moments, and a tenth of the runs are canceled. Afterwards every run has
exactly one terminal event, no event id appears twice, every SSE client that reconnected saw
every event of its run once and in order, the read model equals a fresh rebuild, and no crew
process is left behind."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path

import httpx
import nats

from crewyard import settings as settings_mod
from crewyard.platform import rebuild_projection
from crewyard.readmodel import ReadModel
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
TERMINAL = {"run.completed", "run.failed", "run.canceled"}
RUNS = 50


def _call(method: str, url: str, deadline: float, **kw) -> httpx.Response:
    """An API call that waits out a gateway restart (connection errors, 5xx)."""
    while True:
        try:
            r = httpx.request(method, url, timeout=10, **kw)
            if r.status_code < 500:
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing")
        time.sleep(0.3)


class Follower(threading.Thread):
    """An SSE client that reconnects with Last-Event-ID until it sees the run's terminal event."""

    def __init__(self, api: str, run_id: str, deadline: float) -> None:
        super().__init__(daemon=True)
        self.api, self.run_id, self.deadline = api, run_id, deadline
        self.seen: list[tuple[int, str]] = []
        self.reconnects = 0
        self.done = False

    def run(self) -> None:
        while not self.done and time.monotonic() < self.deadline:
            headers = {"Last-Event-ID": str(self.seen[-1][0])} if self.seen else {}
            try:
                with httpx.stream(
                    "GET",
                    f"{self.api}/v1/runs/{self.run_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(10, read=30),
                ) as resp:
                    if resp.status_code != 200:
                        raise httpx.HTTPError(f"status {resp.status_code}")
                    seq = None
                    for line in resp.iter_lines():
                        if line.startswith("id:"):
                            seq = int(line[3:])
                        elif line.startswith("data:") and seq is not None:
                            data = json.loads(line[5:])
                            self.seen.append((seq, data["id"]))
                            if data["type"] in TERMINAL:
                                self.done = True
                                return
            except (httpx.HTTPError, ValueError):
                pass
            self.reconnects += 1
            time.sleep(0.3)


async def _stream_contents(nats_url: str) -> list[tuple[int, str, dict]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    last = (await js.stream_info("CREWYARD_EVENTS")).state.last_seq
    out = []
    sub = await js.subscribe("crewyard.evt.>", ordered_consumer=True)
    while not out or out[-1][0] < last:
        msg = await sub.next_msg(timeout=10)
        out.append((msg.metadata.sequence.stream, msg.subject, json.loads(msg.data)))
    await nc.drain()
    return out


async def _dump(db: Path) -> dict:
    rm = await ReadModel.open(db)
    try:
        return await rm.dump()
    finally:
        await rm.close()


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
        },
    ).up()
    try:
        deadline = time.monotonic() + 240
        api = cluster.api
        crew = write_crew(tmp_path / "chatty", CHATTY)
        from crewyard.packaging import pack

        dep = _call(
            "POST",
            f"{api}/v1/projects/chaos/deployments",
            deadline,
            content=pack(crew),
            headers={"Content-Type": "application/gzip"},
        ).json()
        while (
            _call("GET", f"{api}/v1/deployments/{dep['deployment_id']}", deadline).json()["status"]
            == "building"
        ):
            time.sleep(0.2)

        run_ids: list[str] = []
        followers: list[Follower] = []
        stop_chaos = threading.Event()
        victims = ["runner1", "runner2", "projector", "gateway", "nats"]

        def chaos() -> None:
            # Every piece goes down at least once (in random order), then random blows.
            first = rnd.sample(victims, len(victims))
            while not stop_chaos.wait(rnd.uniform(1.5, 3.5)):
                victim = first.pop() if first else rnd.choice(victims)
                cluster.kill(victim)
                time.sleep(rnd.uniform(0.2, 1.5))
                cluster.start(victim)

        monkey = threading.Thread(target=chaos, daemon=True)
        monkey.start()
        to_cancel = set(rnd.sample(range(RUNS), RUNS // 10))
        cancels: list[threading.Timer] = []
        for i in range(RUNS):
            r = _call(
                "POST",
                f"{api}/v1/runs",
                deadline,
                json={"deployment_id": dep["deployment_id"], "input": {"n": 30}},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert r.status_code in (200, 202), r.text
            run_ids.append(r.json()["id"])
            if i in to_cancel:  # a random tenth is canceled, pending or running
                url = f"{api}/v1/runs/{run_ids[-1]}/cancel"
                timer = threading.Timer(rnd.uniform(0, 1.5), _call, ("POST", url, deadline))
                timer.start()
                cancels.append(timer)
            if i % 2 == 0:
                follower = Follower(api, run_ids[-1], deadline)
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
            statuses = {r: _call("GET", f"{api}/v1/runs/{r}", deadline).json()["status"] for r in run_ids}
            if all(s in ("succeeded", "failed", "canceled") for s in statuses.values()):
                break
            time.sleep(1)
        stuck = {r: s for r, s in statuses.items() if s not in ("succeeded", "failed", "canceled")}
        assert not stuck, f"runs not finished: {stuck}"
        for follower in followers:
            follower.join(timeout=max(1, deadline - time.monotonic()))

        events = asyncio.run(_stream_contents(cluster.nats_url))
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
        assert sum(f.reconnects for f in followers) > 0  # the chaos did cut streams

        canceled = sum(s == "canceled" for s in statuses.values())
        assert canceled >= 1 and sum(s == "succeeded" for s in statuses.values()) >= RUNS // 2, statuses

        cluster.stop("gateway")
        cluster.stop("projector")
        db = cluster.root / "web" / "readmodel.sqlite3"
        live = asyncio.run(_dump(db))
        s = settings_mod.load(cluster.root / "web", nats_url=cluster.nats_url)
        asyncio.run(rebuild_projection(s))
        assert asyncio.run(_dump(db)) == live
    finally:
        cluster.down()
    # Crews die with their runner: a killed one's at once, a stopped one's as it shuts down.
    left = crew_processes(tmp_path)
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = crew_processes(tmp_path)
    assert left == [], "crew processes left behind"
