"""The broker away, as probes and clients see it, with every service in its own process.

- Started before NATS, services wait (they do not exit), alive but not ready, saying what they
  wait for; once NATS is there they all become ready.
- While NATS is down: every /readyz says 503 with its reasons, /healthz stays 200; reads that
  need the stream answer 503 within seconds (artifact download, the event stream of a finished
  run, a run the read model does not know), writes too; what the read model knows is still
  served. When NATS is back, everything is ready again and the same reads succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from crewyard.core.ids import new_id
from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run
from crewyard.testing.cluster import Cluster


def _until(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # Reads and appends give NATS 2 s, not 5 (each of an append's five tries): an outage's 503s
    # come sooner, what is checked is the same.
    c = Cluster(tmp_path, runners=1, env={"CREWYARD_STORE_TIMEOUT": "2"})
    tmp_path.mkdir(parents=True, exist_ok=True)
    try:
        yield c
    finally:
        c.down()


def test_services_started_before_nats_wait_for_it(cluster: Cluster):
    cluster.start("nats")  # once, for its credentials (as an operator has them before anything runs)
    cluster.stop("nats")
    for name in cluster.names:  # NATS is down
        cluster.start(name)
    for name in cluster.names:
        _until(f"{name} answers /readyz", lambda n=name: cluster.readyz(n).status_code == 503)
        body = cluster.readyz(name).json()
        assert body["status"] == "not ready"
        assert "NATS" in body["error"]["message"], body
        assert httpx.get(cluster.health_url(name) + "/healthz", timeout=10).status_code == 200
    assert all(cluster.procs[n].poll() is None for n in cluster.names)  # waiting, not exited
    early = httpx.post(cluster.api + "/v1/runs", json={"project": "p"}, timeout=10)
    assert early.status_code == 503 and early.json()["error"]["code"] == "unavailable"  # clients retry

    cluster.start("nats")
    cluster.wait_ready()
    body = cluster.readyz("gateway").json()
    assert set(body["checks"]) == {"nats", "stream", "writes", "read_model"}
    assert "writes" not in cluster.readyz("projector").json()["checks"]  # it only reads
    assert "read_model" not in cluster.readyz("runner1").json()["checks"]
    scraped = httpx.get(cluster.health_url("runner1") + "/metrics", timeout=10)
    assert scraped.status_code == 200 and "# HELP crewyard_" in scraped.text  # same listener
    log = (cluster.root / "runner1.log").read_text()
    assert "waiting for NATS" in log


def test_reads_fail_fast_while_nats_is_down_and_recover(cluster: Cluster):
    cluster.up()
    cluster.wait_ready()
    with cluster.client(timeout=60) as api:
        dep = deploy(api, EXAMPLES / "hello", "outage")
        assert dep["status"] == "ready", dep
        r = api.post("/v1/runs", json={"project": "outage", "input": {"topic": "outages"}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        assert wait_run(api, run_id)["status"] == "succeeded"
        events = sse_events(api, f"/v1/runs/{run_id}/events")
        assert api.get(f"/v1/runs/{run_id}/artifacts/report.md").status_code == 200

        cluster.kill("nats")
        for name in cluster.names:
            _until(f"{name} not ready", lambda n=name: cluster.readyz(n).status_code == 503)
            body = cluster.readyz(name).json()
            assert body["reasons"] and body["error"]["code"] == "not_ready"
            assert httpx.get(cluster.health_url(name) + "/healthz", timeout=10).status_code == 200

        # What the read model knows is still served; what needs the stream is a 503, not a hang.
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"
        for path in (
            f"/v1/runs/{run_id}/artifacts/report.md",
            f"/v1/runs/{run_id}/events",
            f"/v1/runs/{new_id('run')}",
        ):
            r = api.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text[:300])
            assert r.json()["error"]["code"] == "unavailable"
        r = api.post("/v1/runs", json={"project": "outage", "input": {}})
        assert r.status_code == 503, r.text

        cluster.start("nats")
        cluster.wait_ready()
        assert sse_events(api, f"/v1/runs/{run_id}/events") == events
        assert api.get(f"/v1/runs/{run_id}/artifacts/report.md").content.startswith(b"# outages")
        assert api.get(f"/v1/runs/{new_id('run')}").status_code == 404


def test_a_read_model_that_lags_never_turns_a_run_into_a_404(cluster: Cluster):
    """The projector stopped (as after a failover): writes are answered from the stream's
    acknowledgement, lookups of what exists are 503 (never 404) until it catches up."""
    cluster.up()
    cluster.wait_ready()
    with cluster.client(timeout=60) as api:
        dep = deploy(api, EXAMPLES / "hello", "lag")
        assert dep["status"] == "ready", dep
        cluster.stop("projector")

        r = api.post("/v1/runs", json={"project": "lag", "input": {"topic": "lag"}})
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        assert r.json()["status"] == "pending" and r.json()["input"] == {"topic": "lag"}
        again = api.post(
            "/v1/runs", json={"project": "lag", "input": {"n": 1}}, headers={"Idempotency-Key": "lag-1"}
        )
        assert again.status_code == 202, again.text
        replay = api.post(
            "/v1/runs", json={"project": "lag", "input": {"n": 1}}, headers={"Idempotency-Key": "lag-1"}
        )
        assert replay.status_code == 200 and replay.json()["run_id"] == again.json()["run_id"]
        reused = api.post(
            "/v1/runs", json={"project": "lag", "input": {"n": 2}}, headers={"Idempotency-Key": "lag-1"}
        )
        assert reused.status_code == 422, reused.text

        r = api.get(f"/v1/runs/{run_id}")
        assert r.status_code == 503, r.text
        assert api.get(f"/v1/runs/{new_id('run')}").status_code == 404

        cluster.start("projector")
        _until("the run is found again", lambda: api.get(f"/v1/runs/{run_id}").status_code == 200)
        assert wait_run(api, run_id)["status"] == "succeeded"
        assert wait_run(api, again.json()["run_id"])["status"] == "succeeded"
