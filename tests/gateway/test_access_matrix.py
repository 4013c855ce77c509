"""Every route, every kind of caller → the exact status, against a running platform.

The routes come from the app's own route table: a route added without an entry in ``ROUTES``
(``access_routes.py``: what to call it with, and what it answers when the caller may) fails
``test_every_route_is_in_the_matrix``, and one without access metadata fails
``test_every_route_declares_who_may_call_it`` — so a new route is checked from its first day.

Callers: no key, a malformed key, a revoked key, an expired key (401 each, before anything else
is looked at); a key of each role on the project the resources belong to (``own``: the route's
answer when the role suffices, else 403); the same keys on another project's resources
(``other``: 404, exactly as for a project that does not exist — never 403, which would say it
exists). Where the project is in the body, another project's answer is 404 as well; listings
answer 200 and show nothing of it.

A caller that may is sent what stops short of changing anything where that is possible (a JSON
body the route refuses, 400); routes that only delete or act get a fresh resource each time.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from access_routes import (
    CSRF,
    OPEN,
    REFUSED,
    RESOURCES,
    ROUTES,
    J,
    Res,
    Route,
    new_consumer,
    new_env,
    new_key,
    new_row,
    new_schedule,
    new_table,
    new_thread,
    new_trigger,
    new_webhook,
)

from crewyard.auth.apikeys import KeyRegistry
from crewyard.client import tls_context
from crewyard.core.access import ROLES, rank
from crewyard.core.events import shown_to_clients
from crewyard.eventstore import EventStore, StreamSettings, connect
from crewyard.gateway import create_app
from crewyard.settings import load
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess

OWN, OTHER = "acm-own", "acm-other"


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``METHOD /path`` (parameter types left out) → the route's ``opt``, from the app itself."""
    import re

    app = create_app(load(tmp_path_factory.mktemp("routes")))
    found = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method == "OPTIONS" or route.path.startswith("/schema"):
                    continue
                found[f"{method} {re.sub(r':[a-z]+}', '}', route.path)}"] = dict(handler.opt)
    return found


def test_every_route_declares_who_may_call_it(app_routes: dict[str, dict[str, Any]]):
    for route, opt in app_routes.items():
        assert opt.get("open") is True or opt.get("role") in ROLES, f"{route} declares no access rule"


def test_every_route_is_in_the_matrix(app_routes: dict[str, dict[str, Any]]):
    routes = app_routes
    missing = sorted(set(routes) - set(ROUTES) - OPEN)
    assert not missing, f"routes the access matrix does not know (add them to ROUTES): {missing}"
    assert {r for r, opt in routes.items() if opt.get("open")} == OPEN
    platform_wide = {r for r, opt in routes.items() if opt.get("platform")}
    assert platform_wide == {r for r, route in ROUTES.items() if route.scope == "platform"}
    assert not set(ROUTES) - set(routes), "ROUTES lists routes the app no longer has"


# -- the platform and its callers --------------------------------------------------------------


@dataclass
class World:
    platform: PlatformProcess
    res: dict[str, Res]
    keys: dict[str, str]  # caller → token


def _make(api: httpx.Client, project: str) -> Res:
    r = Res(project)
    dep = deploy(api, EXAMPLES / "hello", project)
    assert dep["status"] == "ready", dep
    r.dep_id, r.name = dep["id"], dep["name"]
    run = api.post("/v1/runs", json={"project": project, "input": {"topic": "t"}})
    assert run.status_code == 202, run.text
    r.run_id = run.json()["run_id"]
    assert wait_run(api, r.run_id)["status"] == "succeeded"
    r.webhook_id = new_webhook(api, r)["webhook_id"]
    r.trigger_id = new_trigger(api, r)["trigger_id"]
    r.schedule_id = new_schedule(api, r)["schedule_id"]
    r.table_id = new_table(api, r)["table_id"]
    r.row_id = new_row(api, r)["row_id"]
    r.extra["env_key"] = new_env(api, r)["key"]
    r.key_id = new_key(api, r)["key_id"]
    r.consumer_id = new_consumer(api, r)["consumer_id"]
    r.thread_id = new_thread(api, r)["thread_id"]
    return r


def _token(api: httpx.Client, role: str, project: str | None, **extra: Any) -> str:
    k = api.post("/v1/keys", json={"role": role, "project": project, "name": f"{role}", **extra})
    assert k.status_code == 201, k.text
    return str(k.json()["token"])


def _expired_key(platform: PlatformProcess, project: str) -> tuple[str, str]:
    """The id and token of an admin key of ``project`` that expired an hour ago, made as a gateway
    makes keys (the API takes only expiries still to come: one a moment ahead raced the clock,
    refused when the request reached a slow gateway after it)."""

    async def main() -> tuple[str, str]:
        nc = await connect(platform.nats_url, name="test-keys", creds=platform.creds())
        registry = KeyRegistry(EventStore(nc, StreamSettings()))
        try:
            await registry.start()
            key, token = await registry.create(
                name="expired",
                role="admin",
                project=project,
                expires_at=datetime.now(UTC) - timedelta(hours=1),
            )
            return key.key_id, token
        finally:
            await registry.stop()
            await nc.drain()

    return asyncio.run(main())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Hundreds of refused requests come from this one address: the limit on them is tested apart.
    env = {"CREWYARD_WEBHOOK_TARGETS": "private", "CREWYARD_AUTH_FAIL_LIMIT": "0"}
    platform = PlatformProcess(tmp_path_factory.mktemp("access"), env=env).start()
    try:
        with platform.client(timeout=60) as api:
            res = {"own": _make(api, OWN), "other": _make(api, OTHER)}
            keys = {role: _token(api, role, OWN) for role in ROLES}
            keys["platform-read"] = _token(api, "read", None)
            revoked = api.post("/v1/keys", json={"role": "admin", "project": OWN, "name": "gone"}).json()
            assert api.delete(f"/v1/keys/{revoked['id']}").status_code == 200
            keys["revoked"] = revoked["token"]
            expired_id, keys["expired"] = _expired_key(platform, OWN)
            keys["malformed"] = "cyk_" + "A" * 20
            deadline = time.monotonic() + 60
            while api.get(f"/v1/keys/{expired_id}").status_code == 404:  # until the gateway has it
                assert time.monotonic() < deadline, "the gateway never learnt of the expired key"
                time.sleep(0.2)
            with platform.client(key=keys["expired"]) as expired:  # known to it, and refused
                assert expired.get("/v1/whoami").status_code == 401
        yield World(platform, res, keys)
    finally:
        platform.stop()


def _path(template: str, r: Res, values: dict[str, str]) -> str:
    fill = {
        "project": r.project,
        "run_id": r.run_id,
        "dep_id": r.dep_id,
        "name": r.name,
        "webhook_id": r.webhook_id,
        "trigger_id": r.trigger_id,
        "schedule_id": r.schedule_id,
        "table_id": r.table_id,
        "row_id": r.row_id,
        "key_id": r.key_id,
        "consumer_id": r.consumer_id,
        "thread_id": r.thread_id,
        "delivery_id": "dlv_missing",
        "key": r.extra["env_key"],
        **values,
    }
    path = template.split(" ", 1)[1]
    if template.endswith("/artifacts/{name}"):
        path = path.replace("{name}", "report.md")
    path = path.replace("{action}", "pause")
    for name, value in fill.items():
        path = path.replace("{" + name + "}", value)
    if ROUTES.get(template, Route(0)).project_query:
        path += f"?project={r.project}"
    return path


def _call(
    platform: PlatformProcess,
    token: str | None,
    template: str,
    path: str,
    body: Any = None,
    kind: str | None = None,
) -> httpx.Response:
    method = template.split(" ", 1)[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=platform.api, timeout=30, headers=headers, verify=tls_context()) as client:
        if kind == "gzip":
            return client.request(
                method, path, content=b"not a crew", headers={"Content-Type": "application/gzip"}
            )
        form = ROUTES.get(template, Route(0)).form
        if form is not None:
            client.cookies.set("crewyard_csrf", CSRF)
            return client.request(method, path, data={**form, "_csrf": CSRF})
        if ROUTES.get(template, Route(0)).sse:
            with client.stream(method, path) as streamed:
                return streamed  # the status is all this test reads; closing ends the stream
        if body is not None or kind == J:
            return client.request(method, path, json=REFUSED if body is None else body)
        return client.request(method, path)


def _projects_in(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("project", "name") and isinstance(v, str):
                found.add(v)
            found |= _projects_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= _projects_in(v)
    return found


@pytest.mark.parametrize("template", sorted(ROUTES))
def test_callers_without_a_valid_key_are_refused(world: World, template: str):
    route = ROUTES[template]
    path = _path(template, world.res["own"], {})
    for caller in (None, "malformed", "revoked", "expired"):
        token = world.keys[caller] if caller else None
        r = _call(world.platform, token, template, path, kind=route.body)
        assert r.status_code == 401, (template, caller, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer"), (template, caller)
    odd = (
        b"Basic Zm9vOmJhcg==",
        b"Bearer",
        "Bearer é€".encode(),
        b"Bearer cyk_" + b"A" * 4000,
        b"bearer  x y",
    )
    for header in odd:
        with httpx.Client(base_url=world.platform.api, timeout=30, verify=tls_context()) as client:
            r = client.request(template.split(" ", 1)[0], path, headers={"Authorization": header})
        assert r.status_code == 401, (template, header, r.status_code)


@pytest.mark.parametrize("template", sorted(ROUTES))
def test_each_role_on_its_own_project(world: World, template: str, app_routes: dict[str, dict[str, Any]]):
    route = ROUTES[template]
    needed = app_routes[template]["role"]
    own = world.res["own"]
    with world.platform.client(timeout=60) as admin:
        for role in ROLES:
            values = route.fresh(admin, own) if route.fresh else {}
            path = _path(template, own, values)
            r = _call(world.platform, world.keys[role], template, path, kind=route.body)
            allowed = rank(role) >= rank(needed) and route.scope != "platform"  # a project's key
            expected = route.allowed if allowed else 403
            assert r.status_code == expected, (template, role, r.status_code, r.text[:300])


@pytest.mark.parametrize("template", sorted(ROUTES))
def test_each_role_on_another_project(world: World, template: str, app_routes: dict[str, dict[str, Any]]):
    route = ROUTES[template]
    needed = app_routes[template]["role"]
    own, other = world.res["own"], world.res["other"]
    for role in ROLES:
        token = world.keys[role]
        if route.scope == "path":
            r = _call(world.platform, token, template, _path(template, other, {}), kind=route.body)
            assert r.status_code == 404, (template, role, r.status_code, r.text[:300])
            if "{project}" in template and any(f"{{{k}}}" in template for k in RESOURCES):
                # This project's path, another project's resource: as missing as an unknown one.
                mixed = _path(template, other, {"project": own.project})
                r = _call(world.platform, token, template, mixed, kind=route.body)
                expected = 403 if rank(role) < rank(needed) else 404
                assert r.status_code == expected, (template, role, "mixed", r.status_code)
        elif route.scope == "body":
            assert route.valid_body is not None
            r = _call(world.platform, token, template, _path(template, own, {}), body=route.valid_body(OTHER))
            expected = 404 if rank(role) >= rank(needed) else 403
            assert r.status_code == expected, (template, role, r.status_code, r.text[:300])
        elif route.scope == "listing" and rank(role) >= rank(needed):
            path = _path(template, own, {}).split("?")[0]
            # Filtered on another project: what a project that does not exist answers this key.
            nowhere = world.platform.client(key=token).get(path, params={"project": "acm-nowhere"})
            cases = ({"project": OTHER},) if route.project_query or route.sse else ({}, {"project": OTHER})
            if template == "/v1/runs":  # another project's version as the filter: not found
                r = world.platform.client(key=token).get(path, params={"deployment_id": other.dep_id})
                assert r.status_code == 404 and OTHER not in r.text, (template, role, r.text[:300])
            for params in cases:
                r = httpx.get(
                    world.platform.api + path,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    verify=tls_context(),
                )
                expected = nowhere.status_code if params else 200
                assert r.status_code == expected, (template, role, params, r.status_code)
                at = r.text.replace(f"project={OTHER}", "").find(OTHER)  # the filter asked, echoed
                assert r.status_code != 200 or at < 0, (
                    template,
                    role,
                    params,
                    r.text[max(0, at - 300) : at + 100],
                )


def test_a_stream_that_cancels_its_run_when_left_needs_the_role_that_cancels(world: World):
    path = f"/v1/runs/{world.res['own'].run_id}/events?cancel_on_disconnect=true"
    for role in ROLES:
        r = _call(world.platform, world.keys[role], "GET /v1/runs/{run_id}/events", path)
        assert r.status_code == (200 if rank(role) >= rank("run") else 403), (role, r.status_code)


def test_another_projects_version_named_in_a_body_reads_like_an_unknown_one(world: World):
    own, other = world.res["own"], world.res["other"]
    unknown = "dep_" + "0" * (len(other.dep_id) - 4)
    api = world.platform.client(key=world.keys["deploy"])
    answers = []
    for dep_id in (other.dep_id, unknown):
        r = api.post(f"/v1/projects/{own.project}/rollback", json={"deployment_id": dep_id})
        assert r.status_code == 404, r.text
        answers.append(r.json()["error"]["message"].replace(dep_id, "<id>"))
    assert answers[0] == answers[1], answers  # nothing tells that the other one exists


def test_an_expiring_key_makes_only_credentials_that_expire_with_it(world: World):
    own = world.res["own"].project
    ends = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    token = _token(world.platform.client(), "admin", own, expires_at=ends.isoformat())
    api = world.platform.client(key=token)
    made = api.post("/v1/consumers", json={"project": own, "name": f"temp{time.monotonic_ns()}"})
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(made.json()["expires_at"]) == ends  # NATS credentials that lasted
    later = (ends + timedelta(days=1)).isoformat()
    refused = api.post("/v1/consumers", json={"project": own, "name": "later", "expires_at": later})
    assert refused.status_code == 403 and "expire when it does" in refused.text, refused.text
    key = api.post("/v1/keys", json={"role": "read", "project": own, "name": "child"})
    assert key.status_code == 201 and datetime.fromisoformat(key.json()["expires_at"]) == ends


def test_a_platform_wide_key_reaches_every_project_with_its_role(world: World):
    token = world.keys["platform-read"]
    for r in world.res.values():
        assert (
            _call(world.platform, token, "GET /v1/runs/{run_id}", f"/v1/runs/{r.run_id}").status_code == 200
        )
        refused = _call(world.platform, token, "POST /v1/runs/{run_id}/cancel", f"/v1/runs/{r.run_id}/cancel")
        assert refused.status_code == 403
    assert _call(world.platform, token, "GET /v1/keys", "/v1/keys").status_code == 403


def test_metrics_of_every_project_need_a_platform_wide_key(world: World):
    """The metrics count runs, builds and requests of every project: a project's key, even its
    admin's, is refused; a platform-wide key with the read role (a scraper's) is let in."""
    scraped = _call(world.platform, world.keys["platform-read"], "GET /metrics", "/metrics")
    assert scraped.status_code == 200 and "crewyard_runs" in scraped.text
    refused = _call(world.platform, world.keys["admin"], "GET /metrics", "/metrics")
    assert refused.status_code == 403 and "platform-wide key" in refused.json()["error"]["message"]
    assert "crewyard_" not in refused.text


def test_open_routes_need_no_key(world: World):
    with httpx.Client(base_url=world.platform.api, timeout=30, verify=tls_context()) as client:
        for path in ("/healthz", "/readyz", "/v1/asyncapi.json", "/schema/openapi.json"):
            assert client.get(path).status_code == 200, path
        assert OWN not in client.get("/healthz").text
        # The API document, and no page: Litestar's browsable ones loaded scripts from public
        # CDNs on the console's origin.
        assert client.get("/schema").json()["openapi"].startswith("3.")
        for page in ("/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/nope"):
            answer = client.get(page)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found", page
        missing = client.get("/static/nope.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        # The console's live fragments say why they are refused, as the API does.
        live = client.get("/live/runs")
        assert live.status_code == 401 and live.json()["error"]["code"] == "unauthorized"
        # An unknown trigger token: the trigger's own check answers, not the API key's.
        assert client.post("/webhooks/runs/nope", json={}).status_code == 404


def test_browsers_cannot_send_simple_cross_site_requests(world: World):
    token = world.keys["admin"]
    own = world.res["own"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=world.platform.api, timeout=30, verify=tls_context()) as client:
        form = client.post(
            "/v1/runs",
            content=b"project=acm-own",
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415
        plain = client.put(
            f"/v1/projects/{OWN}/env/X",
            content=b'{"value": "1"}',
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert plain.status_code == 415
        upload = client.post(
            f"/v1/projects/{OWN}/deployments",
            content=gzip.compress(b"x"),
            headers={**headers, "Content-Type": "application/json"},
        )
        assert upload.status_code == 415
        # A body-less POST needs the Authorization header a page cannot send: with none, 401.
        assert client.post(f"/v1/runs/{own.run_id}/cancel").status_code == 401
        # CORS is off unless configured: no preflight is granted.
        pre = client.options(
            "/v1/runs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in pre.headers
        # DNS rebinding: a name the API does not answer to.
        assert client.get("/v1/runs", headers={**headers, "Host": "evil.example"}).status_code == 400


def _events_until(platform: PlatformProcess, token: str, path: str, run_id: str) -> list[dict[str, Any]]:
    """A stream's events from sequence 1 until ``run_id``'s terminal event."""
    seen: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=platform.api, timeout=60, headers=headers, verify=tls_context()) as client,
        client.stream("GET", path, params={"after": 0}) as resp,
    ):
        assert resp.status_code == 200, (path, resp.status_code)
        for line in resp.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            seen.append(event)
            if event.get("aggregate_id") == run_id and event["type"] in ("run.completed", "run.failed"):
                return seen
    raise AssertionError(f"{path} ended before {run_id} did")


PATH_TOKEN = "T0KEN-of-a-chat-service"


def test_event_streams_never_carry_secret_bearing_events(world: World):
    with world.platform.client(timeout=60) as admin:
        # Secret-bearing events of both projects, then a run whose end closes the reading.
        for r in world.res.values():
            new_env(admin, r)
            hook = new_webhook(admin, r)["webhook_id"]
            new_trigger(admin, r)
            # A chat service's URL keeps its token in the path: a read key sees scheme://host/\u2026
            # of it through the API, and must not read the rest from the events.
            moved = admin.patch(
                f"/v1/projects/{r.project}/webhooks/{hook}", json={"url": f"http://127.0.0.1:9/{PATH_TOKEN}"}
            )
            assert moved.status_code == 200, moved.text
            assert moved.json()["url"].endswith(PATH_TOKEN)  # the deployer's view is whole
        run = admin.post("/v1/runs", json={"project": OWN, "input": {"topic": "last"}})
        run_id = run.json()["run_id"]
        assert wait_run(admin, run_id)["status"] == "succeeded"
    streams = [
        (world.keys["read"], f"/v1/projects/{OWN}/events"),
        (world.keys["read"], "/v1/events"),
        (world.keys["platform-read"], "/v1/events"),
        (world.platform.admin_key, "/v1/events"),
    ]
    for token, path in streams:
        events = _events_until(world.platform, token, path, run_id)
        types = {e["type"] for e in events}
        assert "run.queued" in types, (path, types)
        assert not [t for t in types if not shown_to_clients(t)], (path, types)
        assert not [t for t in types if t.startswith(("env.", "apikey."))], (path, types)
        assert PATH_TOKEN not in json.dumps(events), (path, types)
        if token == world.keys["read"]:
            assert {e["project"] for e in events} == {OWN}, path
