"""Credentials for one outside consumer of one project: it replays and follows that project's runs
and deployments, and the server refuses it everything else."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec
import nats
import pytest
from nats.js.api import ConsumerConfig

from crewyard.auth.consumers import Consumers, IssuedConsumer
from crewyard.core.events import (
    DeploymentCreated,
    EnvSet,
    ProjectCreated,
    RunQueued,
    encode,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.testing.natsperms import Watched, watched

from .conftest import Streams

pytestmark = pytest.mark.timeout(120)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "outside-consumer" / "consume.py"


def _ev(payload, project, aggregate_id):
    return make_event(payload, project=project, aggregate_id=aggregate_id, event_id=new_id("evt"))


async def _history(streams: Streams) -> list[str]:
    """Two projects' events, plus an ``env.set`` stored where older versions stored it (under the
    project's own scope); returns the ids acme's consumer must see, in order."""
    admin, prefix = streams.admin, streams.settings.prefix
    run_id, dep_id = new_id("run"), new_id("dep")
    wanted = []
    for event in (
        _ev(ProjectCreated(name="acme"), "acme", "acme"),
        _ev(
            DeploymentCreated(
                source_digest="sha256-" + "0" * 64, source_size=1, config={"entrypoint": "m:f"}
            ),
            "acme",
            dep_id,
        ),
        _ev(EnvSet(key="TOKEN", value="sealed-new"), "acme", "acme"),
        _ev(RunQueued(deployment_id=dep_id, input={"q": 1}), "acme", run_id),
        _ev(ProjectCreated(name="other"), "other", "other"),
        _ev(RunQueued(deployment_id="dep_o", input={}), "other", new_id("run")),
    ):
        await admin.append(event)
        if event.project == "acme" and event.type != "env.set":
            wanted.append(event.id)
    legacy = encode(_ev(EnvSet(key="OLD", value="sealed-old"), "acme", "acme"))
    await admin.js.publish(f"{prefix}.acme.project.acme.env.set", legacy)
    return wanted


async def _pull(w: Watched, issued: IssuedConsumer, count: int) -> list[dict]:
    js = w.nc.jetstream(timeout=5)
    psub = await js.pull_subscribe_bind(issued.durable, stream=issued.stream)
    got: list[dict] = []
    deadline = asyncio.get_running_loop().time() + 30
    while len(got) < count and asyncio.get_running_loop().time() < deadline:
        try:
            msgs = await psub.fetch(count - len(got), timeout=1)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            got.append(json.loads(m.data))
            await m.ack()
    return got


@pytest.fixture
async def consumers(streams: Streams):
    gateway = await streams.store("gateway")
    yield Consumers(gateway, streams.issuer, streams.names, streams.url)
    await gateway.nc.drain()


async def test_a_consumer_replays_its_project_from_the_start_and_follows_it_live(
    streams: Streams, consumers: Consumers
):
    wanted = await _history(streams)
    issued = await consumers.create("acme", "analytics")
    w = await watched(streams.url, issued.creds)
    try:
        got = await _pull(w, issued, len(wanted))
        assert [e["id"] for e in got] == wanted
        assert all(e["project"] == "acme" and not e["type"].startswith("env.") for e in got)

        live = _ev(RunQueued(deployment_id="dep_x", input={}), "acme", new_id("run"))
        await streams.admin.append(live)
        await streams.admin.append(_ev(EnvSet(key="LATER", value="sealed"), "acme", "acme"))
        after = _ev(ProjectCreated(name="acme"), "acme", "acme")
        await streams.admin.append(after)
        assert [e["id"] for e in await _pull(w, issued, 2)] == [live.id, after.id]
        info = await w.nc.jetstream(timeout=5).consumer_info(issued.stream, issued.durable)
        assert info.num_pending == 0
    finally:
        await w.nc.close()


async def test_a_consumer_is_refused_everything_else(streams: Streams, consumers: Consumers):
    await _history(streams)
    s = streams.settings
    runner_filter = f"{s.prefix}.*.run.*.run.queued"
    await streams.admin.js.add_consumer(
        s.name, ConsumerConfig(durable_name="runner", filter_subject=runner_filter)
    )
    issued = await consumers.create("acme", "analytics")
    w = await watched(streams.url, issued.creds)
    js = w.nc.jetstream(timeout=2)
    try:
        # Another project's subjects, live or stored; its own secret scope.
        await w.refused(lambda: w.nc.subscribe(f"{s.prefix}.other.>"), f"{s.prefix}.other.>")
        await w.refused(lambda: w.nc.subscribe(f"{s.prefix}.acme.>"), f"{s.prefix}.acme.>")
        await w.refused(lambda: w.nc.subscribe(f"{s.prefix}._secret.>"), f"{s.prefix}._secret.>")
        await w.refused(lambda: js.get_msg(s.name, 1, direct=True), f"$JS.API.DIRECT.GET.{s.name}")
        await w.refused(lambda: js.stream_info(s.name), f"$JS.API.STREAM.INFO.{s.name}")
        # Publishing, managing streams.
        forged = f"{s.prefix}.acme.run.run_x.run.queued"
        await w.refused(lambda: js.publish(forged, b"{}"), forged)
        await w.refused(lambda: js.delete_stream(s.name), f"$JS.API.STREAM.DELETE.{s.name}")
        # The platform's own durable: pull and ack.
        await w.refused(
            lambda: w.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{s.name}.runner", b"1", timeout=2),
            f"$JS.API.CONSUMER.MSG.NEXT.{s.name}.runner",
        )
        runner = await streams.admin.js.pull_subscribe_bind("runner", stream=s.name)
        delivered = (await runner.fetch(1, timeout=5))[0]
        await w.refused(lambda: w.nc.publish(delivered.reply, b"+ACK"), delivered.reply)
        # Consumers with another name or filter, or its own widened.
        other = ConsumerConfig(durable_name="mine", filter_subject=f"{s.prefix}.acme.>")
        await w.refused(
            lambda: js.add_consumer(s.name, other), f"$JS.API.CONSUMER.DURABLE.CREATE.{s.name}.mine"
        )
        named = ConsumerConfig(name="mine", filter_subject=f"{s.prefix}.other.>")
        await w.refused(lambda: js.add_consumer(s.name, named), f"$JS.API.CONSUMER.CREATE.{s.name}.mine")
        wider = ConsumerConfig(durable_name=issued.durable, filter_subject=f"{s.prefix}.>")
        await w.refused(
            lambda: js.add_consumer(s.name, wider),
            f"$JS.API.CONSUMER.DURABLE.CREATE.{s.name}.{issued.durable}",
        )
        await w.refused(
            lambda: js.delete_consumer(s.name, issued.durable),
            f"$JS.API.CONSUMER.DELETE.{s.name}.{issued.durable}",
        )
        # Platform stream (API keys, other consumers' records).
        await w.refused(lambda: js.stream_info(s.platform_name), f"$JS.API.STREAM.INFO.{s.platform_name}")
        # Nothing was acknowledged for the runner meanwhile.
        assert (await runner.consumer_info()).num_ack_pending == 1
    finally:
        await w.nc.close()


async def test_revoked_credentials_are_disconnected_and_refused_without_a_restart(
    streams: Streams, consumers: Consumers
):
    await _history(streams)
    issued = await consumers.create("acme", "analytics")
    kept = await consumers.create("acme", "dashboard")
    disconnected = asyncio.Event()

    async def on_disconnect() -> None:
        disconnected.set()

    w = await watched(streams.url, issued.creds, disconnected_cb=on_disconnect, allow_reconnect=False)
    other = await watched(streams.url, kept.creds)
    try:
        await consumers.revoke(issued.consumer_id)
        await asyncio.wait_for(disconnected.wait(), 10)
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(
                streams.url,
                user_credentials=nats.aio.client.RawCredentials(issued.creds),
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        with pytest.raises(nats.js.errors.NotFoundError):
            await streams.admin.js.consumer_info(streams.settings.name, issued.durable)
        listed = await consumers.all()
        assert listed[issued.consumer_id].revoked_at is not None
        assert listed[kept.consumer_id].revoked_at is None
        # Other credentials keep working.
        assert len(await _pull(other, kept, 3)) == 3
    finally:
        await w.nc.close()
        await other.nc.close()


async def test_the_example_consumer_replays_its_project(streams: Streams, consumers: Consumers, tmp_path):
    wanted = await _history(streams)
    issued = await consumers.create("acme", "example")
    bundle = tmp_path / "creds.json"
    bundle.write_bytes(msgspec.json.encode(issued))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        str(bundle),
        "--nats",
        streams.url,
        "--limit",
        str(len(wanted)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    types = [line.split()[1] for line in out.decode().splitlines()]
    assert types == ["project.created", "deployment.created", "run.queued"]
