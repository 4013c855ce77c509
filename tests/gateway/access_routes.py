"""The access matrix's table: every route of the app, what a caller that may call it gets, where
its project is, and how to make a fresh target for routes that delete or act once. The tests
that walk it are in ``test_access_matrix.py``; a route the app has and this table lacks fails
``test_every_route_is_in_the_matrix``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

#: A JSON body no route accepts: a caller that gets past the guard is refused with 400.
REFUSED = "x"


@dataclass
class Res:
    """The resources of one project the matrix calls routes on."""

    project: str
    dep_id: str = ""
    name: str = ""
    run_id: str = ""
    webhook_id: str = ""
    trigger_id: str = ""
    schedule_id: str = ""
    table_id: str = ""
    row_id: str = ""
    key_id: str = ""
    consumer_id: str = ""
    thread_id: str = ""
    extra: dict[str, str] = field(default_factory=dict)


Fresh = Callable[[httpx.Client, Res], dict[str, str]]


@dataclass
class Route:
    #: What a caller that may call it gets (on its own project's resources).
    allowed: int
    #: ``json``: sent the refused JSON body; ``gzip``: a broken upload; None: no body.
    body: str | None = None
    #: Where the project is: ``path`` (or a resource the path names), ``body``, ``listing``
    #: (a query filter), ``none`` (the caller itself), ``platform`` (every project's: only a
    #: platform-wide key may call it).
    scope: str = "path"
    #: For routes that delete or act once: make a new target (returns path values) per call.
    fresh: Fresh | None = None
    #: For ``body`` routes: a valid body naming ``project``.
    valid_body: Callable[[str], Any] | None = None
    sse: bool = False
    #: The route needs ``?project=`` (the caller's own project, unless the case says otherwise).
    project_query: bool = False
    #: A console form: posted with these fields and a valid CSRF token (the guard comes first).
    form: dict[str, str] | None = None


def new_webhook(api: httpx.Client, r: Res) -> dict[str, str]:
    w = api.post(f"/v1/projects/{r.project}/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["*"]})
    assert w.status_code == 201, w.text
    return {"webhook_id": w.json()["id"]}


def new_trigger(api: httpx.Client, r: Res) -> dict[str, str]:
    t = api.post(f"/v1/projects/{r.project}/triggers", json={"name": f"t{time.monotonic_ns()}"})
    assert t.status_code == 201, t.text
    return {"trigger_id": t.json()["id"]}


def new_schedule(api: httpx.Client, r: Res) -> dict[str, str]:
    s = api.post(f"/v1/projects/{r.project}/schedules", json={"cron": "@yearly"})
    assert s.status_code == 201, s.text
    return {"schedule_id": s.json()["id"]}


def new_table(api: httpx.Client, r: Res) -> dict[str, str]:
    t = api.post(
        "/v1/tables",
        json={
            "project": r.project,
            "name": f"t{time.monotonic_ns()}",
            "columns": [{"name": "a", "type": "text"}],
        },
    )
    assert t.status_code == 201, t.text
    return {"table_id": t.json()["id"]}


def new_row(api: httpx.Client, r: Res) -> dict[str, str]:
    row = api.post(f"/v1/tables/{r.table_id}/rows", json={"a": "x"})
    assert row.status_code == 201, row.text
    return {"row_id": row.json()["id"]}


def new_env(api: httpx.Client, r: Res) -> dict[str, str]:
    name = f"V{time.monotonic_ns()}"
    e = api.put(f"/v1/projects/{r.project}/env/{name}", json={"value": "1"})
    assert e.status_code == 200, e.text
    return {"key": name}


def new_thread(api: httpx.Client, r: Res) -> dict[str, str]:
    t = api.post("/v1/threads", json={"project": r.project})
    assert t.status_code == 201, t.text
    return {"thread_id": t.json()["thread_id"]}


def new_key(api: httpx.Client, r: Res) -> dict[str, str]:
    k = api.post("/v1/keys", json={"role": "read", "project": r.project, "name": "victim"})
    assert k.status_code == 201, k.text
    return {"key_id": k.json()["id"]}


def new_consumer(api: httpx.Client, r: Res) -> dict[str, str]:
    c = api.post("/v1/consumers", json={"project": r.project, "name": f"c{time.monotonic_ns()}"})
    assert c.status_code == 201, c.text
    return {"consumer_id": c.json()["consumer_id"]}


J = "json"
ROUTES: dict[str, Route] = {
    "GET /v1/runs": Route(200, scope="listing"),
    "POST /v1/runs": Route(400, J, scope="body", valid_body=lambda p: {"project": p, "input": {}}),
    "GET /v1/runs/{run_id}": Route(200),
    "POST /v1/runs/{run_id}/cancel": Route(400),  # the run has ended: nothing to cancel
    "GET /v1/runs/{run_id}/events": Route(200, sse=True),
    "GET /v1/runs/{run_id}/artifacts": Route(200),
    "GET /v1/runs/{run_id}/artifacts/{name}": Route(200),
    "GET /v1/projects/{project}/deployments": Route(200),
    "POST /v1/projects/{project}/deployments": Route(400, "gzip"),
    "GET /v1/deployments/{dep_id}": Route(200),
    "GET /v1/deployments/{dep_id}/build-log": Route(200, sse=True),
    "GET /v1/projects/{project}/deployments/{name}": Route(200),
    "POST /v1/projects/{project}/deployments/{name}/promote": Route(400, J),
    "POST /v1/projects/{project}/deployments/{name}/rollback": Route(400, J),
    "POST /v1/projects/{project}/rollback": Route(400, J),
    "GET /v1/tables": Route(200, scope="listing", project_query=True),
    "POST /v1/tables": Route(
        400, J, scope="body", valid_body=lambda p: {"project": p, "name": "new", "columns": []}
    ),
    "DELETE /v1/tables/{table_id}": Route(200, fresh=new_table),
    "GET /v1/tables/{table_id}": Route(200),
    "PATCH /v1/tables/{table_id}": Route(400, J),
    "GET /v1/tables/{table_id}/rows": Route(200),
    "POST /v1/tables/{table_id}/rows": Route(400, J),
    "DELETE /v1/tables/{table_id}/rows/{row_id}": Route(200, fresh=new_row),
    "GET /v1/tables/{table_id}/rows/{row_id}": Route(200),
    "PATCH /v1/tables/{table_id}/rows/{row_id}": Route(400, J),
    "GET /v1/projects": Route(200, scope="listing"),
    "GET /v1/projects/{project}": Route(200),
    "DELETE /v1/projects/{project}/env/{key}": Route(200, fresh=new_env),
    "PUT /v1/projects/{project}/env/{key}": Route(400, J),
    "PUT /v1/projects/{project}/limits": Route(400, J),
    "GET /v1/projects/{project}/env": Route(200),
    "GET /v1/projects/{project}/events": Route(200, sse=True),
    "GET /v1/projects/{project}/webhooks": Route(200),
    "POST /v1/projects/{project}/webhooks": Route(400, J),
    "DELETE /v1/projects/{project}/webhooks/{webhook_id}": Route(200, fresh=new_webhook),
    "PATCH /v1/projects/{project}/webhooks/{webhook_id}": Route(400, J),
    "GET /v1/projects/{project}/webhooks/{webhook_id}": Route(200),
    "POST /v1/projects/{project}/webhooks/{webhook_id}/rotate-secret": Route(200),
    "GET /v1/webhooks/{webhook_id}/deliveries": Route(200),
    # No delivery of that id: the webhook's project is checked first, the delivery then.
    "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": Route(404),
    "GET /v1/projects/{project}/triggers": Route(200),
    "POST /v1/projects/{project}/triggers": Route(400, J),
    "DELETE /v1/projects/{project}/triggers/{trigger_id}": Route(200, fresh=new_trigger),
    "GET /v1/projects/{project}/schedules": Route(200),
    "POST /v1/projects/{project}/schedules": Route(400, J),
    "DELETE /v1/projects/{project}/schedules/{schedule_id}": Route(200, fresh=new_schedule),
    "GET /v1/projects/{project}/schedules/{schedule_id}": Route(200),
    "POST /v1/projects/{project}/schedules/{schedule_id}/pause": Route(200),
    "POST /v1/projects/{project}/schedules/{schedule_id}/resume": Route(200),
    "GET /v1/keys": Route(200, scope="listing"),
    "GET /metrics": Route(200, scope="platform"),
    "POST /v1/keys": Route(400, J, scope="body", valid_body=lambda p: {"role": "read", "project": p}),
    "DELETE /v1/keys/{key_id}": Route(200, fresh=new_key),
    "GET /v1/keys/{key_id}": Route(200),
    "GET /v1/whoami": Route(200, scope="none"),
    "GET /v1/consumers": Route(200, scope="listing"),
    "POST /v1/consumers": Route(400, J, scope="body", valid_body=lambda p: {"project": p, "name": "spy"}),
    "DELETE /v1/consumers/{consumer_id}": Route(200, fresh=new_consumer),
    "GET /v1/events": Route(200, scope="listing", sse=True),
    "POST /v1/threads": Route(400, J, scope="body", valid_body=lambda p: {"project": p}),
    "GET /v1/threads": Route(200, scope="listing"),
    "GET /v1/threads/{thread_id}": Route(200),
    "POST /v1/threads/{thread_id}/runs": Route(400, J),
    "GET /v1/threads/{thread_id}/history": Route(200),
    "POST /v1/threads/{thread_id}/copy": Route(400, J),
    "DELETE /v1/threads/{thread_id}": Route(200, fresh=new_thread),
    "GET /v1/threads/{thread_id}/events": Route(200, sse=True),
    # The console: pages and the forms they post.
    "GET /": Route(200, scope="listing"),
    "GET /runs/{run_id}": Route(200),
    "POST /runs/{run_id}/cancel": Route(303, form={}),
    "GET /runs/{run_id}/artifacts/{name}": Route(200),
    "GET /live/runs": Route(200, scope="listing", sse=True),
    "GET /live/runs/{run_id}": Route(200, sse=True),
    "GET /live/deployments/{dep_id}": Route(200, sse=True),
    "GET /projects": Route(200, scope="listing"),
    "GET /projects/{project}": Route(200),
    "GET /deployments/{dep_id}": Route(200),
    "POST /projects/{project}/deployments/{name}/point": Route(400, form={}),
    "POST /projects/{project}/env": Route(400, form={}),
    "POST /projects/{project}/env/{key}/unset": Route(303, form={}, fresh=new_env),
    "GET /projects/{project}/automation": Route(200),
    "GET /projects/{project}/webhooks/{webhook_id}": Route(200),
    "POST /projects/{project}/schedules/{schedule_id}/{action}": Route(303, form={}),
    # An empty form: the page again, with why it was refused (the API's 400).
    "POST /projects/{project}/webhooks": Route(400, form={}),
    "POST /projects/{project}/triggers": Route(400, form={}),
    "POST /projects/{project}/schedules": Route(400, form={}),
    "POST /projects/{project}/webhooks/{webhook_id}/rotate-secret": Route(200, form={}),
    "POST /projects/{project}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver": Route(404, form={}),
    "GET /threads": Route(200, scope="listing"),
    "GET /threads/{thread_id}": Route(200),
    "GET /live/threads/{thread_id}": Route(200, sse=True),
    "GET /tables": Route(200, scope="listing"),
    "GET /tables/{table_id}": Route(200),
    "GET /consumers": Route(200, scope="listing"),
    "POST /consumers": Route(400, form={}, scope="none"),
    "POST /consumers/{consumer_id}/revoke": Route(303, form={}, fresh=new_consumer),
    "GET /keys": Route(200, scope="listing"),
    "POST /keys": Route(400, form={}, scope="none"),
    "POST /keys/{key_id}/revoke": Route(303, form={}, fresh=new_key),
}
#: Path parameters that name a resource of a project.
RESOURCES = ("webhook_id", "trigger_id", "schedule_id")
#: Open to anyone: never a 401 (trigger URLs authenticate with their own token).
OPEN = {
    "GET /healthz",
    "GET /readyz",
    "GET /v1/asyncapi.json",
    "POST /webhooks/runs/{token}",
    "GET /static/{name}",
    "GET /login",
    "POST /login",
    "POST /logout",
}
#: A CSRF token the console accepts as the double-submit cookie and the form field.
CSRF = "c" * 43
