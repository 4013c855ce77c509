"""Promotions and rollbacks that race another writer of the project's versions: the decision is
read, then another gateway or a builder lands a change to the pointers, then the append is made.
The append fails and the decision is made again on what the stream has then (a few times, then a
409), whichever gateway made the change and however far behind this gateway's read model is.

The interleaving is an event store whose every append of this gateway first lets the other
writer append: after the decision's read, before its append; deterministic, nothing left to
timing."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from handler_calls import handler_request

from crewyard.contract.versions import EnvironmentRollback, Promote
from crewyard.core.events import (
    DeploymentCreated,
    DeploymentPromoted,
    DeploymentReady,
    Event,
    Payload,
    ProjectCreated,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.eventstore import Appended, EventStore
from crewyard.gateway import versions
from crewyard.gateway.context import Gateway
from crewyard.gateway.errors import ApiError, api_error
from crewyard.versions import load_versions

DIGEST = "sha256-" + "0" * 64
CONFIG = {"entrypoint": "crew:run"}


class _Interleaved(EventStore):
    """The event store as this gateway uses it, with another writer's events landing just
    before each of this gateway's appends (one per append, while there are any): ``tried``
    counts this gateway's appends since they were given."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store.nc, store.settings)
        self.meanwhile: list[Event] = []
        self.tried = 0

    def land_meanwhile(self, events: list[Event]) -> None:
        self.meanwhile, self.tried = events, 0

    async def append_acked(self, event: Event, **kwargs: Any) -> Appended:
        self.tried += 1
        if self.meanwhile:
            await super().append_acked(self.meanwhile.pop(0))
        return await super().append_acked(event, **kwargs)


class _StoppedReadModel:
    """A read model that never catches up: nothing the decision reads may come from it."""

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        return False


def _event(payload: Payload, aggregate_id: str) -> Event:
    return make_event(payload, project="shop", aggregate_id=aggregate_id, event_id=new_id("evt"))


async def _created(store: EventStore, environment: str = "production") -> str:
    """A new version of ``default`` aimed at ``environment``, still building."""
    dep = new_id("dep")
    created = DeploymentCreated(source_digest=DIGEST, source_size=1, config=CONFIG, environment=environment)
    await store.append(_event(created, dep))
    return dep


def _ready(dep: str) -> Event:
    return _event(DeploymentReady(env_digest="e", backend="venv"), dep)


async def _deployed(store: EventStore, environment: str = "production") -> str:
    dep = await _created(store, environment)
    await store.append(_ready(dep))
    return dep


@pytest.fixture
async def gateway(store: EventStore) -> Gateway:
    await store.append(_event(ProjectCreated(name="shop"), "shop"))
    g = object.__new__(Gateway)
    g.store, g.rm = _Interleaved(store), _StoppedReadModel()  # type: ignore[assignment]
    return g


def _interleaved(g: Gateway) -> _Interleaved:
    assert isinstance(g.store, _Interleaved)
    return g.store


async def _pointers(store: EventStore) -> dict[str, list[str]]:
    return (await load_versions(store, "shop")).stacks["default"]


async def test_a_rollback_decided_before_a_version_became_ready_is_decided_again(gateway: Gateway) -> None:
    store = _interleaved(gateway)
    v1, v2 = await _deployed(store), await _deployed(store)
    v3 = await _created(store)
    store.land_meanwhile([_ready(v3)])  # production moves to v3 after the rollback read [v1, v2]
    moved = await versions.rollback_environment.fn(
        handler_request(gateway), "shop", "default", EnvironmentRollback()
    )
    # Decided again on [v1, v2, v3]: back from v3 to v2, never from v2 to v1 past v3 unseen.
    assert (moved.deployment_id, moved.previous_deployment_id) == (v2, v3)
    assert store.tried == 2
    assert (await _pointers(store))["production"] == [v1, v2]


async def test_a_promotion_promotes_what_the_environment_runs_when_it_lands(gateway: Gateway) -> None:
    store = _interleaved(gateway)
    await _deployed(store)
    staged = await _deployed(store, "staging")
    newer = await _created(store, "staging")
    store.land_meanwhile([_ready(newer)])  # staging moves on after the promotion read it
    moved = await versions.promote.fn(handler_request(gateway), "shop", "default", Promote(from_="staging"))
    assert moved.deployment_id == newer != staged
    pointers = await _pointers(store)
    assert pointers["production"][-1] == pointers["staging"][-1] == newer


async def test_another_gateways_promotion_between_read_and_append_is_not_undone(gateway: Gateway) -> None:
    store = _interleaved(gateway)
    v1, v2 = await _deployed(store), await _deployed(store)
    v3 = await _deployed(store, "staging")
    # Another gateway promotes staging (v3) to production after this one read production at v2.
    other = DeploymentPromoted(
        deployment_id=v3, previous_deployment_id=v2, name="default", from_environment="staging"
    )
    store.land_meanwhile([_event(other, "shop")])
    moved = await versions.rollback_environment.fn(
        handler_request(gateway), "shop", "default", EnvironmentRollback()
    )
    # One step back from what production runs when the rollback lands: v3 to v2, not to v1.
    assert (moved.deployment_id, moved.previous_deployment_id) == (v2, v3)
    assert store.tried == 2
    assert (await _pointers(store))["production"] == [v1, v2]


async def test_versions_that_keep_changing_are_a_409_and_nothing_is_appended(gateway: Gateway) -> None:
    store = _interleaved(gateway)
    production = await _deployed(store)
    await _deployed(store, "staging")
    building = [await _created(store, "staging") for _ in range(versions.ATTEMPTS)]
    store.land_meanwhile([_ready(dep) for dep in building])
    with pytest.raises(ApiError) as caught:
        await versions.promote.fn(handler_request(gateway), "shop", "default", Promote(from_="staging"))
    assert store.tried == versions.ATTEMPTS and not store.meanwhile
    response = api_error(handler_request(gateway), caught.value)
    assert response.status_code == 409
    body = msgspec.json.decode(msgspec.json.encode(response.content))
    assert set(body) == {"error"} and body["error"]["code"] == "conflict" and body["error"]["message"]
    pointers = await _pointers(store)
    assert pointers["staging"][-1] == building[-1] and pointers["production"] == [production]
