"""Outgoing webhooks under stress: a notifier killed mid-delivery loses nothing, and a slow
receiver never holds up a fast one."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from crewyard.core.events import RunCompleted, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, connect
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess
from crewyard.testing.receiver import Receiver
from crewyard.testing.services import ServiceProcess

ENV = {
    "CREWYARD_WEBHOOK_TIMEOUT": "3",
    "CREWYARD_WEBHOOK_RETRY_BASE": "0.2",
    "CREWYARD_NOTIFIER_ACK_WAIT": "11",
    "CREWYARD_WEBHOOK_TARGETS": "private",
}


@pytest.fixture(scope="module")
def bare_platform(tmp_path_factory: pytest.TempPathFactory):
    """Everything but the notifier, which each test runs (and kills) itself."""
    env = {**ENV, "CREWYARD_SERVICES": "builder,runner,projector,gateway,scheduler"}
    p = PlatformProcess(tmp_path_factory.mktemp("resilience"), env=env).start()
    yield p
    p.stop()


def notifier(p: PlatformProcess) -> ServiceProcess:
    return ServiceProcess("notifier", p.data_dir, p.nats_url, port=p.port, env=ENV).start()


def test_a_notifier_killed_mid_delivery_loses_nothing(bare_platform: PlatformProcess):
    holding = {"on": True}

    def script(n: int, headers: dict[str, str], body: bytes) -> tuple[int, float]:
        return (200, 1.5) if holding["on"] else (200, 0.0)  # slow at first: the kill lands mid-request

    first = notifier(bare_platform)
    try:
        with Receiver(script) as rx, bare_platform.client(timeout=60) as client:
            assert deploy(client, EXAMPLES / "hello", "killed")["status"] == "ready"
            r = client.post("/v1/projects/killed/webhooks", json={"url": rx.url, "events": ["*"]})
            hook = r.json()
            runs = [
                client.post("/v1/runs", json={"project": "killed", "input": {"i": i}}).json()
                for i in range(3)
            ]
            rx.wait_for(lambda got: len(got) >= 1, timeout=60)
            first.kill()  # SIGKILL while a request is in flight
            holding["on"] = False
            for run in runs:
                wait_run(client, run["run_id"])
            second = notifier(bare_platform)
            try:
                expected = 2 * len(runs)  # started + succeeded per run
                deadline = time.monotonic() + 90
                while True:
                    done = client.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=200").json()["deliveries"]
                    if len(done) == expected and all(d["status"] == "succeeded" for d in done):
                        break
                    assert time.monotonic() < deadline, (
                        [(d["event"], d["status"]) for d in done],
                        second.log_tail(),
                    )
                    time.sleep(0.3)
            finally:
                second.stop()
            got = rx.snapshot()
    finally:
        first.kill()
    ids = {d["id"] for d in done}
    received = {r.headers["webhook-id"] for r in got}
    assert received == ids  # nothing lost, nothing invented
    for r in got:  # a repeat is the same delivery: same id, same body
        same = [x for x in got if x.headers["webhook-id"] == r.headers["webhook-id"]]
        assert {x.body for x in same} == {r.body}
    assert len(got) >= len(ids)


def test_a_slow_receiver_never_delays_a_fast_one(bare_platform: PlatformProcess):
    """1,000 deliveries due at once: 500 synthetic terminal events, each to a receiver that does not
    answer (it holds every request for longer than the test lasts) and to a fast one. Every
    delivery to the fast one arrives while the slow one has answered nothing, and the slow one is
    not flooded meanwhile (its lane narrows instead). No clock decides: a head-of-line block would
    leave the fast receiver waiting until the deadline."""
    n_events = 500
    with (
        Receiver(lambda n, h, b: (200, 3600.0)) as slow,
        Receiver(lambda n, h, b: (200, 0.0)) as fast,
        bare_platform.client(timeout=60) as client,
    ):
        client.put("/v1/projects/fanout/env/X", json={"value": "1"})  # makes the project
        hooks = []
        for rx in (slow, fast):
            r = client.post("/v1/projects/fanout/webhooks", json={"url": rx.url, "events": ["run.succeeded"]})
            assert r.status_code == 201, r.text
            hooks.append(r.json()["id"])

        async def append_terminal_events() -> None:
            nc = await connect(bare_platform.nats_url, name="test-fanout", creds=bare_platform.creds())
            try:
                store = EventStore(nc)
                for _ in range(n_events):
                    event = make_event(
                        RunCompleted(output={"synthetic": True}),
                        project="fanout",
                        aggregate_id=new_id("run"),
                        event_id=new_id("evt"),
                    )
                    await store.append_nowait(event)
                await store.flush()
            finally:
                await nc.drain()

        asyncio.run(append_terminal_events())
        proc = notifier(bare_platform)
        try:
            try:
                fast.wait_for(lambda got: len(got) >= n_events, timeout=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_unfinished(client, hooks[1])}\n{proc.log_tail()}") from None
            held = slow.snapshot()
        finally:
            proc.stop()
    assert len({r.headers["webhook-id"] for r in fast.snapshot()}) == n_events
    assert held and not any(r.answered for r in held)
    assert len(held) < n_events // 5, len(held)


def _unfinished(client: httpx.Client, webhook_id: str) -> str:
    """What became of a webhook's deliveries that have not succeeded (for a failure's message)."""
    pending = client.get(f"/v1/webhooks/{webhook_id}/deliveries?status=pending&limit=200").json()
    rows = pending.get("deliveries", [])
    shown = [(d["attempts"], d["last_status_code"], d["last_error"], d["next_attempt_at"]) for d in rows[:20]]
    return f"{len(rows)} pending deliveries to the fast receiver (attempts, status, error, next): {shown}"
