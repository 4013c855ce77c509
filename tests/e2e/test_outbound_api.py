"""The webhook, trigger and schedule APIs against a running platform: validation, secrets shown
once, typed errors, read-your-writes."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from crewyard.eventstore import EventStore, connect
from crewyard.testing.api import EXAMPLES, deploy


@pytest.fixture(scope="module")
def project(platform) -> str:
    with platform.client(timeout=60) as client:
        assert deploy(client, EXAMPLES / "hello", "outbound")["status"] == "ready"
    return "outbound"


def test_webhook_crud_shows_the_secret_once(api: httpx.Client, project: str):
    r = api.post(f"/v1/projects/{project}/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["id"].startswith("whk_")
    assert hook["enabled"] is True and hook["events"] == ["*"]
    listed = api.get(f"/v1/projects/{project}/webhooks").json()["webhooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and listed[0]["secret"] is None
    got = api.get(f"/v1/projects/{project}/webhooks/{hook['id']}").json()
    assert got["secret"] is None and got["url"] == "http://127.0.0.1:9/hook"

    r = api.patch(
        f"/v1/projects/{project}/webhooks/{hook['id']}",
        json={"events": ["run.succeeded", "run.failed"], "enabled": False},
    )
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["run.failed", "run.succeeded"] and r.json()["enabled"] is False
    assert r.json()["disabled_reason"] == "disabled through the API"
    r = api.patch(f"/v1/projects/{project}/webhooks/{hook['id']}", json={"enabled": True})
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None

    rotated = api.post(f"/v1/projects/{project}/webhooks/{hook['id']}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    assert api.get(f"/v1/webhooks/{hook['id']}/deliveries").json() == {"deliveries": [], "next_cursor": None}

    assert api.delete(f"/v1/projects/{project}/webhooks/{hook['id']}").status_code == 200
    gone = api.get(f"/v1/projects/{project}/webhooks/{hook['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert api.get(f"/v1/projects/{project}/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://x/y", "events": ["*"]}, "invalid_url"),
        ({"url": "http://u:p@example.com/", "events": ["*"]}, "invalid_url"),
        ({"url": "http://169.254.169.254/", "events": ["*"]}, "invalid_url"),
        ({"url": "http://example.com/", "events": ["run.completed"]}, "invalid_events"),
        ({"url": "http://example.com/", "events": []}, "bad_request"),
        ({"url": "http://example.com/"}, "bad_request"),
        ({"url": "http://example.com/", "events": ["*"], "secret": "mine"}, "bad_request"),
        ({"url": 5, "events": ["*"]}, "bad_request"),
    ],
)
def test_bad_webhooks_are_400(api: httpx.Client, project: str, body, code):
    r = api.post(f"/v1/projects/{project}/webhooks", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


def test_webhooks_of_unknown_projects_and_ids_are_404(api: httpx.Client, project: str):
    hook = {"url": "http://x/", "events": ["*"]}
    assert api.post("/v1/projects/nope/webhooks", json=hook).status_code == 404
    assert api.get(f"/v1/projects/{project}/webhooks/whk_nope").status_code == 404
    assert api.get("/v1/webhooks/whk_nope/deliveries").status_code == 404
    assert api.post("/v1/webhooks/whk_nope/deliveries/dlv_x/redeliver").status_code == 404


def test_a_trigger_url_is_shown_once_and_revocation_makes_it_404(api: httpx.Client, project: str):
    r = api.post(f"/v1/projects/{project}/triggers", json={"name": "ci"})
    assert r.status_code == 201, r.text
    trig = r.json()
    assert trig["url"].startswith("/webhooks/runs/") and trig["token"] in trig["url"]
    listed = api.get(f"/v1/projects/{project}/triggers").json()["triggers"]
    assert listed[0]["id"] == trig["id"] and listed[0]["url"] is None and listed[0]["token"] is None
    assert api.delete(f"/v1/projects/{project}/triggers/{trig['id']}").json()["revoked"] is True
    assert api.post(trig["url"], json={}).status_code == 404
    bad = api.post(f"/v1/projects/{project}/triggers", json={"name": "x", "environment": "qa"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_environment"
    bad = api.post(f"/v1/projects/{project}/triggers", json={"name": "x", "template": {"a": "$nope"}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_template"


def test_schedules_show_their_next_fire_times_and_pause(api: httpx.Client, project: str):
    r = api.post(
        f"/v1/projects/{project}/schedules",
        json={"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "input": {"topic": "daily"}},
    )
    assert r.status_code == 201, r.text
    sch = r.json()
    assert sch["status"] == "active" and len(sch["next_fire_times"]) == 3
    assert all(t.endswith(("07:00:00+00:00", "08:00:00+00:00")) for t in sch["next_fire_times"])
    paused = api.post(f"/v1/projects/{project}/schedules/{sch['id']}/pause").json()
    assert paused["status"] == "paused" and paused["next_fire_times"] == []
    resumed = api.post(f"/v1/projects/{project}/schedules/{sch['id']}/resume").json()
    assert resumed["status"] == "active" and resumed["next_fire_times"]
    assert [s["id"] for s in api.get(f"/v1/projects/{project}/schedules").json()["schedules"]] == [sch["id"]]
    assert api.delete(f"/v1/projects/{project}/schedules/{sch['id']}").status_code == 200
    assert api.get(f"/v1/projects/{project}/schedules/{sch['id']}").status_code == 404
    for body, code in (
        ({"cron": "61 * * * *"}, "invalid_schedule"),
        ({"cron": "* * * * *", "timezone": "Mars/Base"}, "invalid_schedule"),
        ({"cron": "* * * * *", "overlap": "sometimes"}, "bad_request"),
        ({"cron": "* * * * *", "deployment": "dep_00000000000000000000000000"}, "not_found"),
    ):
        r = api.post(f"/v1/projects/{project}/schedules", json=body)
        assert r.status_code in (400, 404), r.text
        assert r.json()["error"]["code"] == code, r.text


def test_secrets_never_enter_the_stream_in_clear_text(api: httpx.Client, project: str, platform):
    hook = api.post(f"/v1/projects/{project}/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
    rotated = api.post(f"/v1/projects/{project}/webhooks/{hook.json()['id']}/rotate-secret").json()
    trig = api.post(
        f"/v1/projects/{project}/triggers", json={"name": "s", "signature": {"secret": "a-sender-secret-123"}}
    ).json()
    secrets = [hook.json()["secret"], rotated["secret"], trig["token"], "a-sender-secret-123"]

    async def everything() -> bytes:
        nc = await connect(platform.nats_url, name="test-secrets", creds=platform.creds())
        try:
            store = EventStore(nc)
            return b"".join(r.data for r in await store.load_raw(f"{store.prefix}.{project}.>"))
        finally:
            await nc.drain()

    stream = asyncio.run(everything())
    assert b"webhook.secret_rotated" in stream and b"trigger.created" in stream
    for secret in secrets:
        assert secret.encode() not in stream
        # Not even the key part of a whsec_ secret (trigger tokens are unprefixed base64url, in
        # which a "_" may come anywhere: what follows one can be a single letter).
        assert secret.removeprefix("whsec_").encode() not in stream
