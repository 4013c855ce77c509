"""Roles, tokens and the one access decision every route takes."""

from datetime import UTC, datetime, timedelta

import pytest

from crewyard.core.access import ApiKey, decide, fold_keys, new_token, token_hash, well_formed
from crewyard.core.events import ApiKeyCreated, ApiKeyRevoked, Recorded, make_event

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _key(role: str, project: str | None = "acme", **kw) -> ApiKey:
    return ApiKey(
        key_id="key_1", name="k", role=role, project=project, token_sha256="00", created_at=NOW, **kw
    )


def test_tokens_are_recognisable_high_entropy_and_stored_as_a_hash():
    token = new_token()
    assert token.startswith("cyk_") and well_formed(token) and len(token) == 47
    assert new_token() != token
    assert token_hash(token) != token and len(token_hash(token)) == 64
    key = _key("read")
    key.token_sha256 = token_hash(token)
    assert key.matches(token) and not key.matches(new_token())


@pytest.mark.parametrize("bad", ["", "cyk_", "cyk_short", "Bearer x", "cyk_" + "a" * 44, "cyk_" + "é" * 43])
def test_malformed_tokens_are_recognised(bad: str):
    assert not well_formed(bad)


@pytest.mark.parametrize(
    ("role", "needed", "expected"),
    [
        ("read", "read", "ok"),
        ("read", "run", "forbidden"),
        ("run", "run", "ok"),
        ("run", "deploy", "forbidden"),
        ("deploy", "run", "ok"),
        ("deploy", "admin", "forbidden"),
        ("admin", "deploy", "ok"),
    ],
)
def test_roles_include_the_ones_below(role: str, needed: str, expected: str):
    assert decide(_key(role), needed, "acme") == expected


def test_another_projects_resources_are_not_found_whatever_the_role():
    assert decide(_key("admin"), "read", "other") == "not_found"
    assert decide(_key("admin", project=None), "read", "other") == "ok"
    assert decide(_key("admin"), "admin", None) == "forbidden"  # platform administration


def test_keys_create_only_keys_no_wider_than_themselves():
    project_admin, platform_admin = _key("admin"), _key("admin", project=None)
    assert project_admin.may_create("deploy", "acme") and not project_admin.may_create("read", "other")
    assert not project_admin.may_create("admin", None)
    assert platform_admin.may_create("admin", None)
    assert not _key("deploy").may_create("read", "acme")


def test_expired_and_revoked_keys_are_unusable():
    assert not _key("read", expires_at=NOW - timedelta(seconds=1)).usable(NOW)
    assert _key("read", expires_at=NOW + timedelta(seconds=1)).usable(NOW)
    assert not _key("read", revoked_at=NOW).usable(NOW)


def test_keys_fold_from_platform_events():
    created = ApiKeyCreated(key_id="key_1", name="ci", token_sha256="ab", role="deploy", project="acme")
    e1 = make_event(created, project="_platform", aggregate_id="key_1", event_id="evt_1", time=NOW)
    e2 = make_event(
        ApiKeyRevoked(key_id="key_1"), project="_platform", aggregate_id="key_1", event_id="evt_2"
    )
    keys = fold_keys([Recorded(1, e1)])
    assert keys["key_1"].usable(NOW) and keys["key_1"].role == "deploy"
    assert not fold_keys([Recorded(1, e1), Recorded(2, e2)])["key_1"].usable(NOW)


def test_a_cascade_ends_the_keys_made_from_a_key_so_far_and_later():
    """``ApiKeyRevoked(cascade=True)`` ends the keys made from the key (by it, by those…) in the
    fold itself, and a key made from any of them after it — on a gateway that had not heard yet —
    is revoked as it is made. A plain revocation ends only the key."""

    def made(seq: int, key_id: str, by: str | None) -> Recorded:
        data = ApiKeyCreated(
            key_id=key_id, name=key_id, token_sha256=key_id, role="admin", project=None, created_by=by
        )
        return Recorded(
            seq, make_event(data, project="_platform", aggregate_id=key_id, event_id=f"evt_{seq}", time=NOW)
        )

    def revoked(seq: int, key_id: str, cascade: bool) -> Recorded:
        data = ApiKeyRevoked(key_id=key_id, cascade=cascade)
        return Recorded(
            seq, make_event(data, project="_platform", aggregate_id=key_id, event_id=f"evt_{seq}", time=NOW)
        )

    later = NOW + timedelta(seconds=1)
    history = [
        made(1, "root", None),
        made(2, "a", "root"),
        made(3, "b", "a"),
        made(4, "c", "b"),
        made(5, "other", "root"),
    ]
    plain = fold_keys([*history, revoked(6, "a", cascade=False), made(7, "d", "b")])
    assert not plain["a"].usable(later) and all(plain[k].usable(later) for k in ("b", "c", "d", "other"))
    ended = fold_keys([*history, revoked(6, "a", cascade=True), made(7, "d", "c"), made(8, "e", "other")])
    assert [k for k in ("root", "a", "b", "c", "d", "e", "other") if ended[k].usable(later)] == [
        "root",
        "e",
        "other",
    ]
    # A key revoked plainly first can still take what it made with it.
    again = fold_keys(
        [*history, revoked(6, "a", cascade=False), revoked(7, "a", cascade=True), made(8, "d", "b")]
    )
    assert [k for k in ("a", "b", "c", "d") if again[k].usable(later)] == []
