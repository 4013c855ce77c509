"""NATS refuses anonymous clients, and each platform service's user what its service must not do."""

from __future__ import annotations

import nats
import pytest
from nats.js.api import ConsumerConfig, StreamConfig

from crewyard.auth import format_creds, public_key
from crewyard.auth._jwt import encode_jwt, new_seed
from crewyard.core.events import (
    ApiKeyCreated,
    DeploymentCreated,
    EnvSet,
    ProjectCreated,
    RunQueued,
    RunStarted,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import EventStore, WorkQueue, connect
from crewyard.eventstore._errors import StoreUnavailable
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.natsperms import watched

from .conftest import Streams

pytestmark = pytest.mark.timeout(120)


def _ev(payload, project="acme", aggregate_id=None):
    return make_event(
        payload, project=project, aggregate_id=aggregate_id or new_id("run"), event_id=new_id("evt")
    )


async def test_a_client_without_credentials_is_refused(nats_server: EmbeddedNats):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=0)
    with pytest.raises(StoreUnavailable, match="no credentials given"):
        await connect(nats_server.url, name="anonymous", connect_timeout=2)


async def test_credentials_signed_by_a_stranger_are_refused(nats_server: EmbeddedNats):
    """A user JWT that names the platform's account but is signed by another key."""
    account = new_seed("account")
    user = new_seed("user")
    nats_claims = {"type": "user", "version": 2, "pub": {"allow": [">"]}, "sub": {"allow": [">"]}}
    jwt = encode_jwt(public_key(user), "intruder", nats_claims, account)
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(
            nats_server.url,
            user_credentials=nats.aio.client.RawCredentials(format_creds(jwt, user)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


async def test_the_gateway_appends_but_cannot_delete_purge_or_reconfigure_streams(streams: Streams):
    gateway = await streams.store("gateway")
    try:
        await gateway.append(_ev(ProjectCreated(name="acme"), aggregate_id="acme"))
        await gateway.append(_ev(EnvSet(key="K", value="sealed"), aggregate_id="acme"))
        await gateway.append(_ev(RunQueued(deployment_id="dep_x", input={})))
        key = ApiKeyCreated(key_id="key_1", name="ci", token_sha256="00", role="read")
        await gateway.append(_ev(key, project="_platform", aggregate_id="key_1"))
        w = await watched(streams.url, streams.creds("gateway"))
        js, s = w.nc.jetstream(timeout=2), streams.settings
        await w.refused(lambda: js.delete_stream(s.name), f"$JS.API.STREAM.DELETE.{s.name}")
        await w.refused(lambda: js.purge_stream(s.name), f"$JS.API.STREAM.PURGE.{s.name}")
        await w.refused(
            lambda: js.update_stream(StreamConfig(name=s.name, subjects=[f"{s.prefix}.>"], max_msgs=1)),
            f"$JS.API.STREAM.UPDATE.{s.name}",
        )
        await w.refused(lambda: js.delete_msg(s.name, 1), f"$JS.API.STREAM.MSG.DELETE.{s.name}")
        await w.refused(lambda: js.delete_stream(s.platform_name), f"$JS.API.STREAM.DELETE.{s.platform_name}")
        await w.nc.close()
    finally:
        await gateway.nc.drain()


async def test_a_runner_cannot_touch_key_management_or_secret_scope_subjects(streams: Streams):
    runner = await streams.store("runner")
    try:
        run_id = new_id("run")
        await streams.admin.append(_ev(RunQueued(deployment_id="dep_x", input={}), aggregate_id=run_id))
        seq = (await runner.load("acme", "run", run_id))[-1].seq
        await runner.append(
            _ev(RunStarted(runner_id="r", backend="process", isolated=False), aggregate_id=run_id),
            expected_seq=seq,
        )
        w = await watched(streams.url, streams.creds("runner"))
        js, s = w.nc.jetstream(timeout=2), streams.settings
        platform_subject = f"{s.platform_prefix}.apikey.key_1.apikey.created"
        await w.refused(lambda: js.publish(platform_subject, b"{}"), platform_subject)
        await w.refused(lambda: js.stream_info(s.platform_name), f"$JS.API.STREAM.INFO.{s.platform_name}")
        await w.refused(
            lambda: js.get_msg(s.platform_name, 1, direct=True), f"$JS.API.DIRECT.GET.{s.platform_name}"
        )
        await w.refused(lambda: w.nc.subscribe(f"{s.platform_prefix}.>"), f"{s.platform_prefix}.>")
        await w.refused(lambda: w.nc.subscribe("_INBOX_gateway.>"), "_INBOX_gateway.>")
        secret = f"{s.prefix}._secret.project.acme.env.set"
        await w.refused(lambda: js.publish(secret, b"{}"), secret)
        forged = f"{s.prefix}.acme.deployment.dep_x.deployment.created"
        await w.refused(lambda: js.publish(forged, b"{}"), forged)
        await w.refused(lambda: js.delete_stream(s.name), f"$JS.API.STREAM.DELETE.{s.name}")
        await w.nc.close()
    finally:
        await runner.nc.drain()


async def test_services_cannot_pull_from_or_reconfigure_each_others_durables(streams: Streams):
    s = streams.settings
    runner = await streams.store("runner")
    try:
        await WorkQueue(runner, "runner", f"{s.prefix}.*.run.*.run.queued").start()
        for service in ("builder", "projector", "gateway"):
            w = await watched(streams.url, streams.creds(service))
            js = w.nc.jetstream(timeout=2)
            await w.refused(
                lambda js=js: js.add_consumer(
                    s.name, ConsumerConfig(durable_name="runner", filter_subject=f"{s.prefix}.>")
                ),
                f"$JS.API.CONSUMER.DURABLE.CREATE.{s.name}.runner",
            )
            next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{s.name}.runner"
            await w.refused(lambda w=w, n=next_subject: w.nc.request(n, b"1", timeout=2), next_subject)
            await w.refused(
                lambda js=js: js.delete_consumer(s.name, "runner"), f"$JS.API.CONSUMER.DELETE.{s.name}.runner"
            )
            await w.nc.close()
    finally:
        await runner.nc.drain()


async def test_the_projector_reads_but_cannot_append(streams: Streams):
    projector = await streams.store("projector")
    try:
        dep = _ev(
            DeploymentCreated(
                source_digest="sha256-" + "0" * 64, source_size=1, config={"entrypoint": "m:f"}
            ),
            aggregate_id=new_id("dep"),
        )
        seq = await streams.admin.append(dep)
        assert (await projector.get(seq)).seq == seq
        w = await watched(streams.url, streams.creds("projector"))
        js, prefix = w.nc.jetstream(timeout=2), streams.settings.prefix
        subject = f"{prefix}.acme.run.run_x.run.queued"
        await w.refused(lambda: js.publish(subject, b"{}"), subject)
        await w.nc.close()
    finally:
        await projector.nc.drain()


async def test_every_service_connects_on_an_inbox_of_its_own(streams: Streams):
    for service in ("gateway", "runner", "builder", "projector", "notifier", "scheduler"):
        store: EventStore = await streams.store(service)
        try:
            assert store.nc.new_inbox().startswith(f"_INBOX_{service}.")
            assert await store.last_seq() >= 0
        finally:
            await store.nc.drain()
