"""Readiness against a real JetStream: what each check says, when it fails, and why."""

from __future__ import annotations

import signal
import socket

import httpx
import msgspec
import pytest

from crewyard.core.events import ProjectCreated, make_event
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, StreamSettings
from crewyard.health import HealthError, HealthListener, Readiness, Reply, health_routes, starting
from crewyard.testing.tasks import tasks_left


async def _append(store: EventStore, n: int) -> int:
    seq = 0
    for _ in range(n):
        event = make_event(ProjectCreated(name="p"), project="p", aggregate_id="p", event_id=new_id("evt"))
        seq = await store.append(event)
    return seq


async def test_a_service_that_writes_is_ready_once_a_heartbeat_is_acknowledged(store: EventStore):
    head = await _append(store, 2)
    readiness = Readiness("runner", instance="host-1.example")
    readiness.attach(store)
    report = await readiness.check()
    assert report.ready, report
    assert set(report.checks) == {"nats", "stream", "writes"}
    assert str(head) in report.checks["stream"]
    kv = await store.js.key_value(store.settings.health_bucket)
    beat = await kv.get(readiness.key)
    assert readiness.key == "runner.host-1_example"
    assert msgspec.json.decode(beat.value or b"{}")["time"] > 0


async def test_a_reader_is_not_asked_to_write(store: EventStore):
    readiness = Readiness("projector", instance="h", writes=False, position=lambda: _at(0))
    readiness.attach(store)
    report = await readiness.check()
    assert report.ready and set(report.checks) == {"nats", "stream", "read_model"}


async def _at(seq: int) -> int:
    return seq


async def test_a_read_model_far_behind_the_stream_is_not_ready(store: EventStore):
    head = await _append(store, 5)
    behind = Readiness("gateway", instance="h", position=lambda: _at(head - 3), max_lag=2, cache_s=0)
    behind.attach(store)
    report = await behind.check()
    assert not report.ready
    assert report.reasons == ["read model is 3 events behind the stream (bound 2)"]
    body = report.body()
    assert body["status"] == "not ready" and body["error"]["code"] == "not_ready"

    close = Readiness("gateway", instance="h", position=lambda: _at(head - 2), max_lag=2)
    close.attach(store)
    assert (await close.check()).ready


async def test_before_start_up_it_says_what_it_waits_for():
    readiness = Readiness("builder", instance="h")
    readiness.waiting("NATS at nats://nowhere:4222")
    report = await readiness.check()
    assert not report.ready
    assert report.reasons == ["waiting for NATS at nats://nowhere:4222"]


async def test_a_missing_stream_is_not_ready(store: EventStore):
    other = EventStore(store.nc, StreamSettings(name="T_NOT_THERE", prefix="tnothere.evt"))
    readiness = Readiness("builder", instance="h")
    readiness.attach(other)
    report = await readiness.check()
    assert not report.ready
    assert "T_NOT_THERE does not exist" in report.reasons[0]


async def test_answers_are_shared_for_a_moment(store: EventStore):
    readiness = Readiness("runner", instance="h", cache_s=60)
    readiness.attach(store)
    first = await readiness.check()
    assert await readiness.check() is first


async def test_the_listener_serves_health_and_takes_more_routes(store: EventStore):
    readiness = Readiness("runner", instance="h")
    readiness.attach(store)
    routes = health_routes(readiness)

    async def metrics() -> Reply:  # what a later /metrics looks like: one more route
        return Reply(200, b"crewyard_up 1\n", "text/plain")

    routes["/metrics"] = metrics
    listener = HealthListener(routes, host="127.0.0.1", port=0)
    url = await listener.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert (await client.get("/metrics")).text == "crewyard_up 1\n"
            assert (await client.get("/nothing")).status_code == 404
            assert (await client.post("/readyz")).status_code == 405
            assert (await client.head("/healthz")).content == b""
    finally:
        await listener.stop()


async def test_the_port_handed_on_gives_connections_without_nagle_delays():
    """The API's server takes the stand-in's listening socket over (``detach``). asyncio turns
    Nagle's algorithm off only on sockets that say they are TCP: one made without the protocol
    number (proto 0) hands every accepted connection on with Nagle on, and a response written as
    head then body waited for the client's delayed ACK — 40 ms on every keep-alive request."""
    import asyncio

    listener = HealthListener({}, host="127.0.0.1", port=0)
    await listener.start()
    sock = await listener.detach()
    assert sock is not None
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            nodelay.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        assert await asyncio.wait_for(nodelay, 10) == 1
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_taken_port_fails_clearly():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = HealthListener({}, host="127.0.0.1", port=port)
        with pytest.raises(HealthError, match="CREWYARD_HEALTH_PORT"):
            await listener.start()


async def test_a_stand_in_for_an_api_not_up_yet_says_503_to_everything_else():
    readiness = Readiness("gateway", instance="h")
    readiness.waiting("JetStream stream CREWYARD_EVENTS")
    listener = HealthListener(
        health_routes(readiness), host="127.0.0.1", port=0, fallback=starting(readiness)
    )
    url = await listener.start()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 503
            r = await client.post("/v1/runs", json={})
            assert r.status_code == 503
            assert "waiting for JetStream stream CREWYARD_EVENTS" in r.json()["error"]["message"]
    finally:
        await listener.stop()


async def test_the_api_port_answers_while_the_other_services_wait_for_nats(tmp_path):
    """``up`` binds the API's stand-in before anything else: the builder, started first, may
    wait for NATS as long as it likes, the port says 503 and why, never refuses."""
    import asyncio

    from crewyard import platform, settings

    with socket.socket() as dead:  # a port nothing listens on: NATS never answers
        dead.bind(("127.0.0.1", 0))
        nats_port = dead.getsockname()[1]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        api_port = free.getsockname()[1]
    conf = settings.load(
        tmp_path / "data", nats_url=f"nats://127.0.0.1:{nats_port}", port=api_port, backend="process"
    )
    stop = asyncio.Event()
    before = asyncio.all_tasks()
    task = asyncio.create_task(platform.up(conf, embedded_nats=False, stop=stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=5) as client:
            for _ in range(200):
                try:
                    ready = await client.get("/readyz")
                    break
                except httpx.ConnectError:
                    assert not task.done(), task
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the API port never answered")
            # Each step of start-up says what it waits for (choosing the runs' backend takes a
            # moment, in a thread); the services then wait for NATS, which never answers.
            seen = []
            for _ in range(200):
                assert ready.status_code == 503
                seen += [r for r in ready.json()["reasons"] if r not in seen]
                if seen[-1] == "waiting for the services to start":
                    break
                await asyncio.sleep(0.05)
                ready = await client.get("/readyz")
            assert seen[-1] == "waiting for the services to start", seen
            assert set(seen) <= {
                "waiting for start-up",
                "waiting for the runs' backend to be chosen",
                "waiting for the services to start",
            }, seen
            assert (await client.get("/healthz")).status_code == 200
            run = await client.post("/v1/runs", json={})
            assert run.status_code == 503
            assert run.json()["error"]["message"] == "starting: waiting for the services to start; try again"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        for sig in (signal.SIGINT, signal.SIGTERM):  # up() stops on these: the loop's, not ours
            asyncio.get_running_loop().remove_signal_handler(sig)
    with socket.socket() as again:  # stopped: the port is let go
        again.bind(("127.0.0.1", api_port))
    # Stopped: nothing of it goes on (a connect to the dead port retried forever, for one).
    left = await tasks_left(before)
    assert not left, left
