"""A project has at most so many webhooks, triggers, schedules and tables (``CREWYARD_MAX_*``):
one more is a 409 ``limit_reached`` and stores nothing; deleting (or revoking) one makes room;
requests racing for the last place cannot pass the limit together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from crewyard.testing.platform import PlatformProcess

LIMIT = 3
ENV = {f"CREWYARD_MAX_{kind}": str(LIMIT) for kind in ("WEBHOOKS", "TRIGGERS", "SCHEDULES", "TABLES")}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("limits"), env=ENV).start()
    yield p
    p.stop()


def _table(project: str, i: int) -> dict[str, Any]:
    return {"project": project, "name": f"t{i}", "columns": [{"name": "word", "type": "text"}]}


# kind: (create path, body of the i-th, delete path of a created one, the list's key, its path)
KINDS = {
    "webhook": (
        "/v1/projects/{p}/webhooks",
        lambda p, i: {"url": f"http://example.com/{i}", "events": ["*"]},
        "/v1/projects/{p}/webhooks/{id}",
        "/v1/projects/{p}/webhooks",
    ),
    "trigger": (
        "/v1/projects/{p}/triggers",
        lambda p, i: {"name": f"ci{i}"},
        "/v1/projects/{p}/triggers/{id}",
        None,  # a revoked trigger stays listed
    ),
    "schedule": (
        "/v1/projects/{p}/schedules",
        lambda p, i: {"cron": "0 9 * * *", "input": {"i": i}},
        "/v1/projects/{p}/schedules/{id}",
        "/v1/projects/{p}/schedules",
    ),
    "table": ("/v1/tables", _table, "/v1/tables/{id}", None),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_one_more_than_the_limit_is_refused_until_one_is_deleted(limited: PlatformProcess, kind: str):
    project = f"lim-{kind}"
    create, body, delete, listing = KINDS[kind]
    with limited.client(timeout=60) as api:
        assert api.post("/v1/tables", json=_table(project, 99)).status_code == 201  # makes the project
        made = []
        for i in range(LIMIT - (kind == "table")):  # the project's first table counts too
            r = api.post(create.format(p=project), json=body(project, i))
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        r = api.post(create.format(p=project), json=body(project, 50))
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert (
            error["code"] == "limit_reached"
            and f"as many {kind}s as a project may have ({LIMIT})" in error["message"]
        )
        if listing:
            shown = api.get(listing.format(p=project)).json()
            assert len(next(iter(shown.values()))) == LIMIT  # nothing was stored for the refusal
        assert api.delete(delete.format(p=project, id=made[0])).status_code == 200
        r = api.post(create.format(p=project), json=body(project, 51))
        assert r.status_code == 201, r.text


def test_requests_racing_for_the_last_places_cannot_pass_the_limit(limited: PlatformProcess):
    project = "lim-race"

    async def race() -> list[int]:
        async with limited.async_client(timeout=60) as api:
            r = await api.post("/v1/tables", json=_table(project, 0))
            assert r.status_code == 201, r.text
            hook = {"url": "http://example.com/", "events": ["*"]}
            answers = await asyncio.gather(
                *(api.post(f"/v1/projects/{project}/webhooks", json=hook) for _ in range(12))
            )
            listed = (await api.get(f"/v1/projects/{project}/webhooks")).json()["webhooks"]
            assert len(listed) == LIMIT, listed
            return [a.status_code for a in answers]

    codes = asyncio.run(race())
    assert sorted(codes) == [201] * LIMIT + [409] * (12 - LIMIT), codes


def test_the_limit_is_per_project(limited: PlatformProcess):
    with limited.client(timeout=60) as api:
        for project in ("lim-a", "lim-b"):
            for i in range(LIMIT):
                r = api.post("/v1/tables", json=_table(project, i))
                assert r.status_code == 201, (project, r.text)
        assert api.post("/v1/tables", json=_table("lim-a", 9)).status_code == 409
        assert len(api.get("/v1/tables", params={"project": "lim-b"}).json()["tables"]) == LIMIT


def test_many_creations_at_once_under_the_limit_all_succeed(tmp_path_factory: pytest.TempPathFactory):
    """Creations of a kind take turns on a gateway: none is refused for losing a race."""
    p = PlatformProcess(tmp_path_factory.mktemp("crowd")).start()  # the default limits

    async def crowd() -> list[int]:
        async with p.async_client(timeout=120) as api:
            assert (await api.post("/v1/tables", json=_table("crowd", 0))).status_code == 201
            body = {"cron": "0 9 * * *", "input": {}}
            answers = await asyncio.gather(
                *(api.post("/v1/projects/crowd/schedules", json=body) for _ in range(40))
            )
            listed = (await api.get("/v1/projects/crowd/schedules")).json()["schedules"]
            assert len(listed) == 40
            return [a.status_code for a in answers]

    try:
        codes = asyncio.run(crowd())
    finally:
        p.stop()
    assert codes == [201] * 40, codes
