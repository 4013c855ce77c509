"""Outgoing webhooks end to end: a real platform, receivers on loopback.

Retries until success, in order per run, signed the published way, every attempt visible; a
receiver that keeps refusing gets its webhook disabled; redelivery; the platform's own ports are
never a target; the read model of it all equals a rebuild.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from crewyard.core.signing import crewship_signature, verify
from crewyard.eventstore import EventStore, connect
from crewyard.projector import rebuild
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.receiver import Received, Receiver

ENV = {
    # Long enough that only the answer made slow on purpose times out on a busy machine (the
    # receiver is a thread of the test process, the sender another process).
    "CREWYARD_WEBHOOK_TIMEOUT": "3",
    "CREWYARD_WEBHOOK_RETRY_BASE": "0.2",
    "CREWYARD_NOTIFIER_ACK_WAIT": "12",
    "CREWYARD_WEBHOOK_DISABLE_AFTER": "3",
}


@pytest.fixture(scope="module")
def hooks_platform(tmp_path_factory: pytest.TempPathFactory):
    p = PlatformProcess(tmp_path_factory.mktemp("webhooks"), env=ENV).start()
    with p.client(timeout=60) as client:
        assert deploy(client, EXAMPLES / "hello", "hooks")["status"] == "ready"
    yield p
    p.stop()


@pytest.fixture
def client(hooks_platform: PlatformProcess):
    with hooks_platform.client(timeout=30) as c:
        yield c


def by_delivery(requests: list[Received]) -> dict[str, list[Received]]:
    out: dict[str, list[Received]] = {}
    for r in requests:
        out.setdefault(r.headers["webhook-id"], []).append(r)
    return out


def make_hook(client: httpx.Client, url: str, events: list[str]) -> dict:
    r = client.post("/v1/projects/hooks/webhooks", json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    return r.json()


def deliveries(client: httpx.Client, hook_id: str) -> list[dict]:
    return client.get(f"/v1/webhooks/{hook_id}/deliveries").json()["deliveries"]


def wait_deliveries(client: httpx.Client, hook_id: str, done, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = deliveries(client, hook_id)
        if done(got):
            return got
        time.sleep(0.2)
    raise AssertionError(f"deliveries not as expected after {timeout}s: {deliveries(client, hook_id)}")


def test_retried_until_success_in_order_signed_and_every_attempt_visible(client: httpx.Client):
    # Per delivery: 500, 500, 500, then too slow (the sender gives up after 3 s, the whole
    # attempt after 6 s), then 200.
    def script(n: int, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        return (500, 0.0) if n <= 3 else (200, 7.0) if n == 4 else (200, 0.0)

    with Receiver(script) as rx:
        hook = make_hook(client, rx.url, ["run.started", "run.succeeded"])
        run_id = client.post("/v1/runs", json={"project": "hooks", "input": {"topic": "retries"}}).json()[
            "run_id"
        ]
        wait_run(client, run_id)
        done = wait_deliveries(
            client, hook["id"], lambda d: len(d) == 2 and all(x["status"] != "pending" for x in d)
        )
        requests = rx.snapshot()
    now = int(time.time())

    per = by_delivery(requests)
    assert set(per) == {d["id"] for d in done}
    for delivery_id, got in per.items():
        assert len([r for r in got if r.headers.get("x-crewship-delivery") == delivery_id]) == len(got)
        successes = got[4:]
        assert len(got) == 5 and len(successes) == 1, [r.status for r in got]  # exactly one success
        for r in got:  # every attempt signed both ways, the same bytes each time
            assert verify(hook["secret"], r.headers, r.body, now=now, tolerance_s=600)
            ts = int(r.headers["x-crewship-timestamp"])
            assert r.headers["x-crewship-signature"] == crewship_signature(hook["secret"], ts, r.body)
            assert r.body == got[0].body
    started = next(d for d in done if d["event"] == "run.started")
    succeeded = next(d for d in done if d["event"] == "run.succeeded")
    # In order per run: the run's success is not sent before its start has been delivered.
    assert max(r.at for r in per[started["id"]]) < min(r.at for r in per[succeeded["id"]])

    body = msgspec.json.decode(per[succeeded["id"]][0].body)
    assert body["type"] == "run.succeeded"
    assert per[succeeded["id"]][0].headers["x-crewship-event"] == "run.succeeded"
    assert body["data"] == client.get(f"/v1/runs/{run_id}").json()  # the run as the API shows it
    assert msgspec.json.decode(per[started["id"]][0].body)["data"]["status"] == "running"

    for d in done:
        assert d["status"] == "succeeded" and d["attempts"] == 5 and d["run_id"] == run_id
        log = d["attempt_log"]
        assert [a["status_code"] for a in log] == [500, 500, 500, None, 200]
        assert [a["outcome"] for a in log] == ["retrying"] * 4 + ["succeeded"]
        assert "timed out" in log[3]["error"] and log[4]["latency_ms"] >= 0
        assert log[0]["response_excerpt"] == "ok" and log[0]["next_attempt_at"]


def test_a_refusing_endpoint_is_disabled_with_a_reason_and_redelivery_works(client: httpx.Client):
    answer = {"status": 410}
    with Receiver(lambda n, h, b: (answer["status"], 0.0)) as rx:
        hook = make_hook(client, rx.url, ["run.started", "run.succeeded"])
        for i in range(2):
            run_id = client.post("/v1/runs", json={"project": "hooks", "input": {"i": i}}).json()["run_id"]
            wait_run(client, run_id)
        # 410 is final: one attempt each; after three failed deliveries in a row, disabled.
        deadline = time.monotonic() + 60
        while client.get(f"/v1/projects/hooks/webhooks/{hook['id']}").json()["enabled"]:
            assert time.monotonic() < deadline, "the webhook was not disabled"
            time.sleep(0.2)
        got = client.get(f"/v1/projects/hooks/webhooks/{hook['id']}").json()
        assert (
            "3 deliveries in a row failed" in got["disabled_reason"] and "HTTP 410" in got["disabled_reason"]
        )
        failed = [d for d in deliveries(client, hook["id"]) if d["status"] == "failed"]
        # Sent ones were refused once each; one whose turn came after the webhook was disabled
        # fails without being sent, saying why (which of the four that is depends on timing).
        sent = [d for d in failed if d["last_status_code"] == 410]
        held = [d for d in failed if d["last_status_code"] != 410]
        assert len(sent) >= 3 and all(d["attempts"] == 1 for d in sent)
        assert all(d["attempt_log"][-1]["error"].startswith("webhook disabled: 3 deliveries") for d in held)

        answer["status"] = 503  # the series a redelivery starts keeps retrying: it stays pending
        r = client.patch(f"/v1/projects/hooks/webhooks/{hook['id']}", json={"enabled": True})
        assert r.json()["enabled"] is True
        target, attempts_before = failed[-1]["id"], failed[-1]["attempts"]
        before = len([x for x in rx.snapshot() if x.headers["webhook-id"] == target])
        # Asked eight times at once, one series is started and the others are refused while it
        # goes on (each had started a series of its own, all delivering again side by side).
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            asked = list(
                pool.map(
                    lambda _: client.post(f"/v1/webhooks/{hook['id']}/deliveries/{target}/redeliver"),
                    range(8),
                )
            )
        assert sorted(r.status_code for r in asked) == [202] + [409] * 7, [r.text for r in asked]
        answer["status"] = 200
        again = wait_deliveries(
            client, hook["id"], lambda d: any(x["id"] == target and x["status"] == "succeeded" for x in d)
        )
        one = next(x for x in again if x["id"] == target)
        series = [a["status_code"] for a in one["attempt_log"]][attempts_before:]
        assert series[-1] == 200 and set(series[:-1]) <= {503}, series
        assert len([x for x in rx.snapshot() if x.headers["webhook-id"] == target]) == before + len(series)
        assert client.post(f"/v1/webhooks/{hook['id']}/deliveries/dlv_nope/redeliver").status_code == 404


def test_the_platform_own_api_is_never_a_target(client: httpx.Client, hooks_platform: PlatformProcess):
    hook = make_hook(client, f"http://127.0.0.1:{hooks_platform.port}/v1/runs", ["run.succeeded"])
    run_id = client.post("/v1/runs", json={"project": "hooks", "input": {}}).json()["run_id"]
    wait_run(client, run_id)
    (d,) = wait_deliveries(client, hook["id"], lambda d: len(d) == 1 and d[0]["status"] == "failed")
    assert d["attempts"] == 1  # refused targets are not retried
    assert "platform's own endpoint" in d["attempt_log"][0]["error"]
    assert d["attempt_log"][0]["status_code"] is None
    client.delete(f"/v1/projects/hooks/webhooks/{hook['id']}")


def test_redirects_are_not_followed(client: httpx.Client):
    with Receiver(lambda n, h, b: (302, 0.0)) as rx:
        hook = make_hook(client, rx.url, ["run.succeeded"])
        run_id = client.post("/v1/runs", json={"project": "hooks", "input": {}}).json()["run_id"]
        wait_run(client, run_id)
        (d,) = wait_deliveries(client, hook["id"], lambda d: len(d) == 1 and d[0]["status"] == "failed")
        assert d["attempts"] == 1 and d["last_status_code"] == 302
        assert len(rx.snapshot()) == 1
    client.delete(f"/v1/projects/hooks/webhooks/{hook['id']}")


def _snapshot(db: Path, tables: tuple[str, ...]) -> tuple[int, dict[str, list[tuple]]]:
    """The read model's position and tables, read in one transaction (a projector may be writing)."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("BEGIN")
        pos = int(con.execute("SELECT seq FROM projector_position").fetchone()[0])
        rows = {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
        con.execute("COMMIT")
        return pos, rows
    finally:
        con.close()


def test_the_read_model_of_webhooks_equals_a_rebuild(hooks_platform: PlatformProcess, tmp_path: Path):
    """Deliveries to gone receivers may still be retrying, so the live read model is read at one
    position and compared with a rebuild that ended at that same position."""
    tables = ("webhooks", "webhook_deliveries", "webhook_attempts", "triggers", "schedules")
    live_db, rebuilt_db = hooks_platform.data_dir / "readmodel.sqlite3", tmp_path / "rebuilt.sqlite3"

    async def compared() -> tuple[dict, dict]:
        nc = await connect(hooks_platform.nats_url, name="test-rebuild", creds=hooks_platform.creds())
        try:
            store = EventStore(nc)
            deadline = time.monotonic() + 60
            while True:
                last = await rebuild(store, rebuilt_db)
                while (live := _snapshot(live_db, tables))[0] < last:
                    assert time.monotonic() < deadline, "the live read model fell behind"
                    await asyncio.sleep(0.1)
                if live[0] == last:
                    return live[1], _snapshot(rebuilt_db, tables)[1]
                assert time.monotonic() < deadline, "the stream never went quiet"
        finally:
            await nc.drain()

    live, again = asyncio.run(compared())
    assert live["webhook_attempts"] and live == again


def test_thread_events_are_refused_as_subscriptions_until_they_are_delivered(client: httpx.Client):
    r = client.post(
        "/v1/projects/hooks/webhooks",
        json={"url": "http://127.0.0.1:9/h", "events": ["thread.checkpointed"]},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_events", r.text
    assert "not delivered" in r.json()["error"]["message"]
    hook = make_hook(client, "http://127.0.0.1:9/h", ["*"])
    r = client.patch(f"/v1/projects/hooks/webhooks/{hook['id']}", json={"events": ["thread.checkpointed"]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_events", r.text
    client.delete(f"/v1/projects/hooks/webhooks/{hook['id']}")


def test_readers_see_a_webhooks_address_without_its_path(
    client: httpx.Client, hooks_platform: PlatformProcess
):
    """Chat services take the secret in the URL's path: the project's deployers see it whole, a
    read key only where it goes."""
    hook = make_hook(client, "http://127.0.0.1:9/services/T000/B000/SECRETPART?token=also", ["run.succeeded"])
    made = client.post("/v1/keys", json={"role": "read", "project": "hooks", "name": "reader"})
    assert made.status_code == 201, made.text
    with hooks_platform.client(key=made.json()["token"]) as reader:
        listed = reader.get("/v1/projects/hooks/webhooks").json()["webhooks"]
        one = reader.get(f"/v1/projects/hooks/webhooks/{hook['id']}").json()
    shown = [w["url"] for w in listed if w["id"] == hook["id"]] + [one["url"]]
    assert shown == ["http://127.0.0.1:9/\u2026"] * 2
    assert client.get(f"/v1/projects/hooks/webhooks/{hook['id']}").json()["url"] == hook["url"]
    assert client.delete(f"/v1/projects/hooks/webhooks/{hook['id']}").status_code == 200
