"""Several machines, on loopback: a 3-node NATS cluster (stream replicas 3), two gateways each
with its own projector and read model, two runners (bwrap sandboxes) and a builder, every one a
process of its own. Runs go in through both gateways while the stream's leader is killed -9, then
a runner, then two of the three nodes (quorum lost) for about 30 s.

Afterwards: every run has exactly one terminal event; no crew ran twice (each attempt's crew
emits an event as it starts; only attempts of the killed runner may have been started again);
no POST was answered 5xx for a run that exists; SSE followers saw every event of their run once,
in order; both read models equal a rebuild; no sandbox or control group is left behind.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from platform_checks import TERMINAL, Follower, call, last_seq, read_model_equals_rebuild, stream_contents

from crewyard import cgroups
from crewyard.runner.liveness import BUCKET, Liveness
from crewyard.testing.api import deploy, write_crew
from crewyard.testing.cluster import Cluster, crew_processes

pytestmark = pytest.mark.timeout(900)

PROBE = """
import os, time
from crewyard_runtime import emit

def run(inputs):
    emit("agent.started", agent="probe")  # this attempt's crew has started
    for i in range(int(inputs["steps"])):
        emit("tool.called", tool="step", input={"i": i})
        time.sleep(0.5)
    return {"steps": inputs["steps"], "secret_ok": os.environ.get("PROBE_SECRET") == "s3cret"}
"""
QUORUM_LOSS_S = 30


@dataclass
class Post:
    key: str
    api: str
    status: int | None  # None: no answer (connection refused while a gateway restarted)
    run_id: str | None
    answer: str = ""
    steps: int = 0


class Submitter(threading.Thread):
    """Creates runs through both gateways, one at a time, each with a key of its own (never
    retried: a POST that failed must have created nothing)."""

    def __init__(
        self, apis: list[str], deployment_id: str, stop: threading.Event, deadline: float, api_key: str
    ) -> None:
        super().__init__(daemon=True)
        self.apis, self.deployment_id, self.stop, self.deadline = apis, deployment_id, stop, deadline
        self.api_key = api_key
        self.posts: list[Post] = []
        self.followers: list[Follower] = []
        self.rnd = random.Random(7)
        self.posted = threading.Condition()
        #: Set once the chaos is over: a long run started afterwards would only be waited for.
        self.short_only = threading.Event()

    def created(self) -> list[Post]:
        return [p for p in self.posts if p.run_id is not None]

    def wait_created(self, more: int, deadline: float) -> None:
        """Until ``more`` runs besides those created so far have been created."""
        with self.posted:
            target = len(self.created()) + more
            done = self.posted.wait_for(
                lambda: len(self.created()) >= target, timeout=max(0.0, deadline - time.monotonic())
            )
        assert done, f"no {more} more runs created: {self.posts}"

    def _record(self, post: Post) -> None:
        with self.posted:
            self.posts.append(post)
            self.posted.notify_all()

    def run(self) -> None:
        i = 0
        while not self.stop.wait(self.rnd.uniform(0.3, 1.0)):
            api, key = self.apis[i % 2], str(uuid.uuid4())
            # Short and long runs: some span the whole quorum loss.
            steps = self.rnd.choice([4, 10] if self.short_only.is_set() else [4, 10, 20, 90])
            body = {"deployment_id": self.deployment_id, "input": {"steps": steps}}
            try:
                headers = {"Idempotency-Key": key, "Authorization": f"Bearer {self.api_key}"}
                r = httpx.post(f"{api}/v1/runs", json=body, headers=headers, timeout=60)
            except httpx.ConnectError:
                self._record(Post(key, api, None, None, steps=steps))
                continue
            except httpx.TimeoutException:
                self._record(Post(key, api, -1, None, steps=steps))  # a POST that hung: never acceptable
                continue
            run_id = r.json().get("id") if r.status_code < 300 else None
            self._record(Post(key, api, r.status_code, run_id, r.text[:300], steps))
            if run_id and i % 3 == 0:  # followed through the other gateway
                follower = Follower(self.apis[(i + 1) % 2], run_id, self.deadline, self.api_key)
                follower.start()
                self.followers.append(follower)
            i += 1


def _known_on(api: str, path: str, deadline: float, key: str) -> None:
    while call("GET", f"{api}{path}", deadline, key=key).status_code != 200:
        time.sleep(0.2)


async def _lease_revision(nats_url: str, creds: Path, runner_id: str) -> int:
    nc = await nats.connect(
        nats_url.split(","), connect_timeout=2, user_credentials=str(creds / "admin.creds")
    )
    try:
        kv = await nc.jetstream(timeout=5).key_value(BUCKET)
        return int((await kv.get(Liveness._key(runner_id))).revision or 0)
    finally:
        await nc.close()


def _renews_its_lease(cluster: Cluster, runner_id: str, since: int, deadline: float) -> None:
    """Until the runner's lease entry has a revision after ``since`` (its last before it was
    killed): the runner started again has bound its consumer and renews its lease (it renews only
    once started, and one still starting when the quorum is lost exits)."""
    while asyncio.run(_lease_revision(cluster.nats_url, cluster.creds_dir, runner_id)) <= since:
        assert time.monotonic() < deadline, f"{runner_id} never renewed its lease again"
        time.sleep(0.2)


def _long_run_running(submitter: Submitter, since: int, api: str, deadline: float, key: str) -> None:
    """Until one of the longest runs created after the first ``since`` POSTs is running: seen
    running as soon as it started, it will still be running after the quorum loss (45 s of
    steps)."""
    while True:
        longest = [p.run_id for p in submitter.posts[since:] if p.run_id and p.steps == 90]
        if any(
            call("GET", f"{api}/v1/runs/{r}", deadline, key=key).json()["status"] == "running"
            for r in longest
        ):
            return
        assert time.monotonic() < deadline, "no long run started"
        time.sleep(0.2)


def test_a_cluster_survives_losing_its_leader_a_runner_and_quorum(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    cluster = Cluster(
        tmp_path,
        runners=2,
        gateways=2,
        nats_nodes=3,
        backend="bwrap",
        env={
            "CREWYARD_SECRET_KEY": key,  # every machine needs the same one
            "CREWYARD_RUNNER_ACK_WAIT": "10",  # the quorum loss outlasts it: runs are redelivered
            "CREWYARD_RUNNER_CONCURRENCY": "8",
            "CREWYARD_RETRY_BACKOFF": "0.5",
            "CREWYARD_RETRY_MAX_ATTEMPTS": "5",
        },
    )
    cluster.up(timeout=300)
    nodes = cluster.nats_cluster
    assert nodes is not None
    deadline = time.monotonic() + 600
    stop = threading.Event()
    runner_ids: dict[str, str] = {}
    try:
        api1, api2 = cluster.apis
        for name in ("runner1", "runner2"):
            while not (cluster.data_dir(name) / "runner-id").exists():
                assert time.monotonic() < deadline
                time.sleep(0.1)
            runner_ids[name] = (cluster.data_dir(name) / "runner-id").read_text().strip()
        with cluster.client(api1) as client:
            assert (
                client.put("/v1/projects/fleet/env/PROBE_SECRET", json={"value": "s3cret"}).status_code == 200
            )
            dep = deploy(client, write_crew(tmp_path / "probe", PROBE), "fleet", timeout=300)
        assert dep["status"] == "ready", dep
        _known_on(api2, f"/v1/deployments/{dep['deployment_id']}", deadline, cluster.admin_key)

        submitter = Submitter(cluster.apis, dep["deployment_id"], stop, deadline, cluster.admin_key)
        submitter.start()

        # Each step waits for runs to be created meanwhile (through a new leader, without runner1)
        # rather than for a fixed time: a fast machine gets to the next step sooner.
        submitter.wait_created(4, deadline)
        leader = nodes.stream_leader("CREWYARD_EVENTS")
        cluster.kill(leader)
        submitter.wait_created(2, deadline)
        cluster.start(leader)
        nodes.wait_healthy()

        submitter.wait_created(3, deadline)
        cluster.kill("runner1")
        killed_at = last_seq(
            cluster.nats_url, cluster.creds_dir
        )  # runner1 appends nothing more: its attempts started before
        submitter.wait_created(2, deadline)
        lease_before = asyncio.run(
            _lease_revision(cluster.nats_url, cluster.creds_dir, runner_ids["runner1"])
        )
        cluster.start("runner1")

        _renews_its_lease(cluster, runner_ids["runner1"], lease_before, deadline)
        submitter.wait_created(3, deadline)
        _long_run_running(submitter, len(submitter.posts), api1, deadline, cluster.admin_key)
        leader = nodes.stream_leader("CREWYARD_EVENTS")
        lost = [leader, next(n for n in nodes.names if n != leader)]
        before_loss = last_seq(cluster.nats_url, cluster.creds_dir)
        for name in lost:
            cluster.kill(name)
        time.sleep(QUORUM_LOSS_S)
        for name in lost:
            cluster.start(name)
        nodes.wait_healthy()
        after_loss = last_seq(cluster.nats_url, cluster.creds_dir)
        submitter.short_only.set()

        # Runs go on being created through the whole cluster until there are enough to judge by:
        # how many got in while nodes were down depends on how fast this machine is.
        whole = time.monotonic() + 5
        while time.monotonic() < whole or sum(p.run_id is not None for p in submitter.posts) < 20:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stop.set()
        submitter.join()

        assert sum(p.run_id is not None for p in submitter.posts) >= 20, submitter.posts
        # Every run in the stream, also one whose POST was refused: it must end like the others.
        run_ids = {
            env["aggregate_id"]
            for _, _, env in stream_contents(cluster.nats_url, cluster.creds_dir)
            if env["type"] == "run.queued"
        }
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            statuses = {
                r: call("GET", f"{api1}/v1/runs/{r}", deadline, key=cluster.admin_key).json()["status"]
                for r in run_ids
            }
            if all(s in ("succeeded", "failed", "canceled") for s in statuses.values()):
                break
            time.sleep(2)
        assert all(s == "succeeded" for s in statuses.values()), statuses
        for follower in submitter.followers:
            follower.join(timeout=max(1, deadline - time.monotonic()))

        events = stream_contents(cluster.nats_url, cluster.creds_dir)
        runs: dict[str, list[tuple[int, dict]]] = {}
        for seq, _subject, env in events:
            if env["aggregate"] == "run":
                runs.setdefault(env["aggregate_id"], []).append((seq, env))
        assert set(runs) == run_ids

        spanning = 0
        for run_id in run_ids:
            history = runs[run_id]
            types = [env["type"] for _, env in history]
            assert sum(t in TERMINAL for t in types) == 1, (run_id, types)
            completed = next(env for _, env in history if env["type"] == "run.completed")
            assert completed["data"]["output"]["secret_ok"], run_id  # the key was the same everywhere
            # Which attempts got as far as starting the crew; all but the last must have been
            # on the killed runner, started before it died.
            attempt, crews = None, []
            for seq, env in history:
                if env["type"] == "run.started":
                    attempt = (seq, env["data"]["runner_id"])
                elif env["type"] == "agent.started":
                    assert attempt is not None and attempt not in crews, (run_id, types)
                    crews.append(attempt)
            for seq, runner in crews[:-1]:
                assert runner == runner_ids["runner1"] and seq < killed_at, (
                    f"run {run_id}: the crew ran twice (attempt at {seq} on {runner}): {types}"
                )
            started = min(seq for seq, env in history if env["type"] == "run.started")
            ended = max(seq for seq, _ in history)
            spanning += started < before_loss and ended > after_loss
        assert spanning, "no run was executing across the quorum loss"
        assert {
            env["data"]["runner_id"]
            for evs in runs.values()
            for _, env in evs
            if env["type"] == "run.started"
        } == set(runner_ids.values())

        for follower in submitter.followers:
            assert follower.done, f"follower of {follower.run_id} never saw the end"
            expected = [(seq, env["id"]) for seq, env in runs[follower.run_id]]
            assert follower.seen == expected, follower.run_id

        for n in ("1", "2"):
            cluster.stop(f"gateway{n}")
            cluster.stop(f"projector{n}")
            read_model_equals_rebuild(cluster.data_dir(f"gateway{n}"), cluster.nats_url, cluster.creds_dir)

        # No POST was answered 5xx (or not at all) for a run that exists.
        keys = {
            env["data"].get("idempotency_key"): run_id for run_id, evs in runs.items() for _, env in evs[:1]
        }
        for post in submitter.posts:
            if post.run_id is None:
                assert post.status is None or post.status >= 500, post  # nothing else may fail
                assert post.key not in keys, f"{post} was refused but its run {keys[post.key]} exists"
            else:
                assert keys.get(post.key) == post.run_id, post
    finally:
        stop.set()
        cluster.down()

    left = crew_processes(tmp_path)
    ids = [cgroups.safe_name(i, 80) for i in runner_ids.values()]
    end = time.monotonic() + 10
    groups = cgroups.groups(lambda name: any(f"@{i}@" in name for i in ids))
    while (left or groups) and time.monotonic() < end:
        time.sleep(0.2)
        left = crew_processes(tmp_path)
        groups = cgroups.groups(lambda name: any(f"@{i}@" in name for i in ids))
    assert left == [] and groups == {}, f"left behind: processes {left}, control groups {list(groups)}"
