"""A project has at most ``CREWYARD_MAX_KEYS`` usable API keys and ``CREWYARD_MAX_CONSUMERS``
active outside consumers: each consumer is a durable consumer of the shared stream, which the
server holds a bounded number of for every project together, and a project admin could make
them without end. One more is a 409 ``limit_reached`` until one is revoked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from crewyard.core.access import KeyFold, fold_keys
from crewyard.core.events import ApiKeyCreated, Recorded, make_event
from crewyard.testing.platform import PlatformProcess


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(
        tmp_path_factory.mktemp("capped"), env={"CREWYARD_MAX_KEYS": "2", "CREWYARD_MAX_CONSUMERS": "1"}
    )
    p.start()
    with p.client() as admin:
        assert admin.put("/v1/projects/capped/limits", json={"max_concurrent_runs": None}).status_code == 200
    yield p
    p.stop()


def _refused(answer: httpx.Response, setting: str) -> None:
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "limit_reached" and setting in answer.json()["error"]["message"]


def test_a_project_admin_makes_keys_up_to_the_limit_and_again_after_a_revocation(
    capped: PlatformProcess,
) -> None:
    with capped.client() as admin:
        made = admin.post("/v1/keys", json={"role": "admin", "project": "capped", "name": "owner"})
        assert made.status_code == 201, made.text
        with capped.client(key=made.json()["token"]) as owner:
            second = owner.post("/v1/keys", json={"role": "read", "project": "capped", "name": "reader"})
            assert second.status_code == 201, second.text
            _refused(
                owner.post("/v1/keys", json={"role": "read", "project": "capped", "name": "one more"}), "KEYS"
            )
            assert owner.delete(f"/v1/keys/{second.json()['id']}").status_code == 200
            again = owner.post("/v1/keys", json={"role": "read", "project": "capped", "name": "again"})
            assert again.status_code == 201, again.text
        # Platform-wide keys are the operator's: never counted against a project.
        assert (
            admin.post("/v1/keys", json={"role": "read", "project": None, "name": "ops"}).status_code == 201
        )


def test_a_project_has_one_consumer_at_most_here(capped: PlatformProcess) -> None:
    # Far enough ahead that the gateway, however late it reads the request, finds it still to come.
    expires = datetime.now(UTC) + timedelta(seconds=10)
    with capped.client() as admin:
        asked = {"project": "capped", "name": "analytics", "expires_at": expires.isoformat()}
        first = admin.post("/v1/consumers", json=asked)
        assert first.status_code == 201, first.text
        _refused(admin.post("/v1/consumers", json={"project": "capped", "name": "second"}), "CONSUMERS")
        while datetime.now(UTC) <= expires + timedelta(seconds=0.2):  # until it has expired
            time.sleep(0.1)
        # Expired, its durable consumer is still on the stream until it is revoked: still counted.
        _refused(admin.post("/v1/consumers", json={"project": "capped", "name": "second"}), "CONSUMERS")
        assert admin.delete(f"/v1/consumers/{first.json()['consumer_id']}").status_code == 200
        assert admin.post("/v1/consumers", json={"project": "capped", "name": "second"}).status_code == 201


def test_the_key_registry_applies_one_event_without_folding_the_history_again() -> None:
    """Each key made folded every key ever made again (quadratic: a project admin making and
    revoking keys slowed every gateway's registry)."""
    events = [
        Recorded(
            i,
            make_event(
                ApiKeyCreated(
                    key_id=f"key_{i}", name="k", token_sha256=f"{i:064x}", role="read", project="p"
                ),
                project="_platform",
                aggregate_id=f"key_{i}",
                event_id=f"evt_{i}",
            ),
        )
        for i in range(1, 51)
    ]
    fold = KeyFold()
    for rec in events[:-1]:
        fold.apply(rec)
    kept = dict(fold.keys)
    fold.apply(events[-1])
    assert all(fold.keys[k] is kept[k] for k in kept)  # the others were not made again
    assert fold.keys.keys() == fold_keys(events).keys()
