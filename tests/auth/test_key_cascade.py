"""Revoking a key with ``cascade``: the keys made from it (by it, by those, and so on) end with it;
keys made elsewhere, and the key that revoked them, keep working; the last platform-wide admin
key is never revoked that way either."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner

from crewyard.cli import cli
from crewyard.testing.platform import PlatformProcess


def _make(platform: PlatformProcess, token: str, **body: str | None) -> tuple[str, str]:
    with platform.client(key=token) as client:
        r = client.post("/v1/keys", json={"name": "k", **body})
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["token"]


def _works(platform: PlatformProcess, token: str) -> bool:
    with platform.client(key=token) as client:
        r = client.get("/v1/whoami")
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200


def test_a_cascade_revokes_every_key_made_from_the_key_and_nothing_else(platform: PlatformProcess, api):
    root = platform.admin_key
    leaked_id, leaked = _make(platform, root, role="admin")
    ci_id, ci = _make(platform, leaked, role="deploy", project="shop")
    sub_id, sub = _make(platform, leaked, role="admin", project="shop")
    deep_id, deep = _make(platform, sub, role="read", project="shop")
    kept_id, kept = _make(platform, root, role="deploy", project="shop")
    plain_id, plain = _make(platform, root, role="admin")
    _, child = _make(platform, plain, role="read")

    # Without cascade only the key itself ends.
    assert api.delete(f"/v1/keys/{plain_id}").json()["revoked_with"] is None
    assert not _works(platform, plain) and _works(platform, child)

    r = api.delete(f"/v1/keys/{leaked_id}", params={"cascade": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    assert sorted(r.json()["revoked_with"]) == sorted([ci_id, sub_id, deep_id])
    for token in (leaked, ci, sub, deep):
        assert not _works(platform, token)
    for token in (root, kept, child):
        assert _works(platform, token)
    listed = {k["id"]: k for k in api.get("/v1/keys").json()["keys"]}
    assert all(listed[i]["revoked_at"] for i in (leaked_id, ci_id, sub_id, deep_id))
    assert listed[kept_id]["revoked_at"] is None
    # Again: nothing left to revoke, and the answer says so.
    again = api.delete(f"/v1/keys/{leaked_id}", params={"cascade": "true"})
    assert again.status_code == 200 and again.json()["revoked_with"] == []


def test_a_cascade_never_revokes_the_last_platform_wide_admin_key(platform: PlatformProcess, api):
    root_id = api.get("/v1/whoami").json()["key"]["id"]
    _, second = _make(platform, platform.admin_key, role="admin")  # another admin, made from the first
    r = api.delete(f"/v1/keys/{root_id}", params={"cascade": "true"})
    assert r.status_code == 409 and "last platform-wide admin key" in r.json()["error"]["message"], r.text
    assert _works(platform, platform.admin_key) and _works(platform, second)


def test_a_project_admin_cascades_only_within_what_it_may_manage(platform: PlatformProcess, api):
    _, shop_admin = _make(platform, platform.admin_key, role="admin", project="mall")
    made_id, made = _make(platform, shop_admin, role="read", project="mall")
    with platform.client(key=shop_admin) as client:
        wider = client.delete(
            f"/v1/keys/{api.get('/v1/whoami').json()['key']['id']}", params={"cascade": "true"}
        )
        assert wider.status_code in (403, 404), wider.text
        mine = client.delete(f"/v1/keys/{made_id}", params={"cascade": "true"})
        assert mine.status_code == 200 and mine.json()["revoked_with"] == []
    assert not _works(platform, made) and _works(platform, shop_admin)


def test_the_cli_revokes_with_cascade_and_says_which(
    platform: PlatformProcess, monkeypatch: pytest.MonkeyPatch
):
    parent_id, parent = _make(platform, platform.admin_key, role="admin")
    child_id, child = _make(platform, parent, role="read")
    monkeypatch.setenv("CREWYARD_API", platform.api)
    monkeypatch.setenv("CREWYARD_API_KEY", platform.admin_key)
    result = CliRunner().invoke(cli, ["keys", "revoke", parent_id, "--cascade"], prog_name="crewyard")
    assert result.exit_code == 0, result.output
    assert f"key {parent_id} revoked, and the 1 made from it: {child_id}" in result.output
    assert not _works(platform, child)


def test_the_live_keys_made_from_each_key_are_counted_through_revoked_ones(platform: PlatformProcess, api):
    a_id, a = _make(platform, platform.admin_key, role="admin")
    b_id, b = _make(platform, a, role="admin")
    _make(platform, b, role="read")
    d_id, _ = _make(platform, a, role="read")
    assert api.delete(f"/v1/keys/{b_id}").status_code == 200  # revoked, but what it made lives on
    page = api.get("/keys")  # the console's keys page offers to end them with the key
    assert page.status_code == 200
    row_a = page.text.split(f'id="key-{a_id}"', 1)[1].split("</tr>", 1)[0]
    row_d = page.text.split(f'id="key-{d_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Also the 2 keys made from it" in row_a  # c (through the revoked b) and d
    assert "made from it" not in row_d


def test_revocations_at_once_never_leave_the_platform_without_an_admin_key(
    tmp_path_factory: pytest.TempPathFactory,
):
    """A cascade from the first admin key racing a revocation of that key by an admin key the
    cascade ends: revocations take turns, so one of them is refused, never both done. (A
    platform of its own: either key may be the one left.)"""
    platform = PlatformProcess(tmp_path_factory.mktemp("lockout")).start()
    try:
        x_id, x = _make(platform, platform.admin_key, role="admin")
        for i in range(20):
            _make(platform, x, role="read", project=f"p{i}")
        _, z = _make(platform, x, role="admin")
        with platform.client() as api:
            root_id = api.get("/v1/whoami").json()["key"]["id"]

        async def race() -> list[int]:
            async with platform.async_client() as by_root, platform.async_client(key=z) as by_z:
                answers = await asyncio.gather(
                    by_root.delete(f"/v1/keys/{x_id}", params={"cascade": "true"}),
                    by_z.delete(f"/v1/keys/{root_id}"),
                )
            return [a.status_code for a in answers]

        codes = asyncio.run(race())
        assert all(code in (200, 401, 409) for code in codes) and codes != [200, 200], codes
        assert [_works(platform, token) for token in (platform.admin_key, z)].count(True) == 1, codes
    finally:
        platform.stop()


def test_a_revocation_and_a_cascade_at_once_end_every_key_made_from_it(platform: PlatformProcess):
    leaked_id, leaked = _make(platform, platform.admin_key, role="admin")
    made = [_make(platform, leaked, role="read", project="twice")[1] for _ in range(8)]

    async def both() -> list[int]:
        async with platform.async_client() as api:
            answers = await asyncio.gather(
                api.delete(f"/v1/keys/{leaked_id}"),
                api.delete(f"/v1/keys/{leaked_id}", params={"cascade": "true"}),
                api.delete(f"/v1/keys/{leaked_id}", params={"cascade": "true"}),
            )
        return [a.status_code for a in answers]

    assert asyncio.run(both()) == [200, 200, 200]
    assert not any(_works(platform, token) for token in (leaked, *made))


def test_a_key_revoked_alone_can_take_what_it_made_later(platform: PlatformProcess, api):
    parent_id, parent = _make(platform, platform.admin_key, role="admin")
    child_id, child = _make(platform, parent, role="read")
    assert api.delete(f"/v1/keys/{parent_id}").status_code == 200
    assert _works(platform, child)
    row = api.get("/keys").text.split(f'id="key-{parent_id}"', 1)[1].split("</tr>", 1)[0]
    assert "Revoke what it made" in row  # the console offers it for a revoked key too
    r = api.delete(f"/v1/keys/{parent_id}", params={"cascade": "true"})
    assert r.status_code == 200 and r.json()["revoked_with"] == [child_id], r.text
    assert not _works(platform, child)


def test_many_revocations_at_once_all_succeed(platform: PlatformProcess):
    """Revocations take turns on a gateway: none is refused for losing a race to another."""
    made = [_make(platform, platform.admin_key, role="read", project="bulk") for _ in range(40)]

    async def revoke_all() -> list[int]:
        async with platform.async_client() as api:
            answers = await asyncio.gather(*(api.delete(f"/v1/keys/{key_id}") for key_id, _ in made))
        return [a.status_code for a in answers]

    assert asyncio.run(revoke_all()) == [200] * 40
    assert not any(_works(platform, token) for _, token in made)


def test_a_projects_key_never_learns_a_platform_wide_keys_id(platform: PlatformProcess) -> None:
    # Keys made by a platform-wide admin showed its id in created_by to the project's admin, to
    # whom GET /v1/keys/{that id} is a 404 (a key never learns what lies outside its project).
    root_id = _make(platform, platform.admin_key, role="admin")[0]
    with platform.client() as client:  # the platform's first key: made by no key
        first = client.get("/v1/whoami").json()["key"]["id"]
    owner_id, owner = _make(platform, platform.admin_key, role="admin", project="secretive")
    made_id, _ = _make(platform, owner, role="read", project="secretive")
    with platform.client(key=owner) as own:
        listed = {k["id"]: k["created_by"] for k in own.get("/v1/keys").json()["keys"]}
        assert listed == {owner_id: None, made_id: owner_id}
        assert own.get(f"/v1/keys/{owner_id}").json()["created_by"] is None
        assert own.get("/v1/whoami").json()["key"]["created_by"] is None
        assert own.get(f"/v1/keys/{first}").status_code == 404
    with platform.client() as client:  # the platform's own admins see who made what
        assert client.get(f"/v1/keys/{owner_id}").json()["created_by"] == first
        assert client.get(f"/v1/keys/{root_id}").json()["created_by"] == first
