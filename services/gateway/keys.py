"""API keys and outside consumers over HTTP (the admin role): create (the secret shown once),
list (never the secret), revoke. A project's admin key manages its project's keys and
consumers only; platform-wide ones need a platform-wide admin key."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from litestar import Request, delete, get, post

from crewyard.auth.apikeys import KeyError_, KeyRegistry, LastAdminKey, RevokedMeanwhile
from crewyard.auth.consumers import ConsumerError, Consumers
from crewyard.contract.keys import (
    Consumer,
    ConsumerCreate,
    ConsumerCredentials,
    ConsumerList,
    Identity,
    Key,
    KeyCreate,
    KeyList,
)
from crewyard.core.access import ApiKey, expiry_within, well_formed
from crewyard.core.platform_state import ConsumerState
from crewyard.eventstore import EventStore
from crewyard.settings import Settings, SettingsError

from .access import allow, current_key, platform_wide, visible_project
from .context import Gateway, gw, project_name
from .errors import ApiError, bad_request, conflict, not_found

ADMIN, READ = {"role": "admin"}, {"role": "read"}


def registry_of(g: Gateway) -> KeyRegistry:
    if g.keys is None:
        raise conflict("this platform runs without API keys (--no-auth)")
    return g.keys


def key_view(
    request: Request[Any, Any, Any], key: ApiKey, last_used: str | None = None, token: str | None = None
) -> Key:
    """``key`` as the request's key may see it: the key that made it only if that one is of the
    viewer's own project (a project's admin never learns a platform-wide key's id)."""
    viewer, made_by = current_key(request), key.created_by
    if viewer is not None and viewer.project is not None and made_by is not None:
        maker = registry_of(gw(request)).keys.get(made_by)
        made_by = made_by if maker is not None and maker.project == viewer.project else None
    return Key(
        id=key.key_id,
        name=key.name,
        role=key.role,
        project=key.project,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=last_used,
        created_by=made_by,
        token=token,
    )


def _require_platform(request: Request[Any, Any, Any], what: str) -> None:
    if not platform_wide(request):
        raise ApiError(403, "forbidden", f"{what} needs a platform-wide admin key")


#: The furthest expiry taken. Beyond it is no real plan, and near year 9999 a moment may have no
#: UTC form at all (``9999-12-31T23:59:59-23:59``), which every later comparison or page of it
#: would trip over. A key that is never to expire leaves ``expires_at`` out.
MAX_EXPIRY_YEARS = 100


def _future(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    now = datetime.now(UTC)
    try:
        utc = when.astimezone(UTC)
    except OverflowError:
        raise bad_request("expires_at is out of range (its UTC form is outside years 1 to 9999)") from None
    if utc <= now:
        raise bad_request("expires_at must be in the future")
    if utc > now + timedelta(days=365 * MAX_EXPIRY_YEARS + MAX_EXPIRY_YEARS // 4):
        raise bad_request(
            f"expires_at must be at most {MAX_EXPIRY_YEARS} years from now (leave it out for no expiry)"
        )
    return when


def _within(limit: int, count: int, project: str, what: str, setting: str, remedy: str) -> None:
    """A 409 ``limit_reached`` when ``project`` has ``limit`` of ``what`` already (0: no limit).
    Counted on this gateway: requests racing on several gateways may pass it by a few."""
    if limit > 0 and count >= limit:
        raise ApiError(
            409,
            "limit_reached",
            f"project {project} has as many {what} as a project may have ({limit}, {setting});"
            f" {remedy} first",
        )


@post("/v1/keys", status_code=201, opt=ADMIN)
async def create_key(request: Request[Any, Any, Any], data: KeyCreate) -> Key:
    """A new API key; the answer holds the key itself, shown this once."""
    return await make_key(
        request, role=data.role, project=data.project, name=data.name, expires_at=data.expires_at
    )


async def make_key(
    request: Request[Any, Any, Any], *, role: str, project: str | None, name: str, expires_at: datetime | None
) -> Key:
    """A new key made by the request's key (never wider than it); the token is in the answer."""
    g = gw(request)
    registry = registry_of(g)
    if project is None:
        _require_platform(request, "a key for every project")
    else:
        allow(request, project_name(project))
        now = datetime.now(UTC)
        usable = sum(1 for k in registry.keys.values() if k.project == project and k.usable(now))
        _within(g.settings.max_keys, usable, project, "usable API keys", "CREWYARD_MAX_KEYS", "revoke one")
    try:
        key, token = await registry.create(
            name=name,
            role=role,
            project=project,
            expires_at=_future(expires_at),
            created_by=current_key(request),
        )
    except KeyError_ as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    return key_view(request, key, token=token)


@get("/v1/keys", opt=ADMIN)
async def list_keys(request: Request[Any, Any, Any], project: str | None = None) -> KeyList:
    """Every key the caller may manage (``?project=``: of one project), revoked ones included;
    never the key itself."""
    registry = registry_of(gw(request))
    shown, only = visible_project(request, project)
    keys = [] if not shown else [k for k in registry.keys.values() if only is None or k.project == only]
    keys.sort(key=lambda k: k.created_at)
    used = await asyncio.gather(*(registry.last_used(k.key_id) for k in keys))
    return KeyList(keys=[key_view(request, k, u) for k, u in zip(keys, used, strict=True)])


@get("/v1/keys/{key_id:str}", opt=ADMIN)
async def get_key(request: Request[Any, Any, Any], key_id: str) -> Key:
    registry = registry_of(gw(request))
    key = registry.keys.get(key_id)
    if key is None:
        raise not_found(f"API key {key_id}")
    return key_view(request, key, await registry.last_used(key_id))


@delete("/v1/keys/{key_id:str}", status_code=200, opt=ADMIN)
async def revoke_key(request: Request[Any, Any, Any], key_id: str, cascade: bool = False) -> Key:
    """Revoke a key: every gateway refuses it from the moment it learns of it (within moments).
    ``cascade=true``: the API keys made from it too (the keys it created, theirs, and so on, then
    and later): the keys a leaked key made end with it. (NATS consumer credentials it issued are
    revoked one by one: ``DELETE /v1/consumers/{id}``.)"""
    return await revoke(request, key_id, cascade=cascade)


async def revoke(request: Request[Any, Any, Any], key_id: str, *, cascade: bool = False) -> Key:
    """Revoke a key no wider than the request's (and, with ``cascade``, the keys made from it);
    never the last platform-wide admin key."""
    registry = registry_of(gw(request))
    if key_id not in registry.keys:
        raise not_found(f"API key {key_id}")
    try:
        made = await registry.revoke(key_id, by=current_key(request), cascade=cascade)
    except KeyError_:
        raise ApiError(403, "forbidden", "a key can only revoke keys no wider than itself") from None
    except LastAdminKey as exc:
        raise conflict(str(exc)) from None
    except RevokedMeanwhile as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    view = key_view(request, registry.keys[key_id], await registry.last_used(key_id))
    if cascade:
        view.revoked_with = made
    return view


@get("/v1/whoami", opt=READ)
async def whoami(request: Request[Any, Any, Any]) -> Identity:
    """The key this request was made with (``crewyard login`` checks a key with it)."""
    g = gw(request)
    visible_project(request)
    key = current_key(request)
    if key is None or g.keys is None:
        return Identity(auth=False)
    return Identity(auth=True, key=key_view(request, key, await g.keys.last_used(key.key_id)))


# -- outside consumers -------------------------------------------------------------------------


def _issuer(g: Gateway) -> Consumers:
    if g.consumers is None:
        raise ApiError(
            503, "unavailable", "this gateway cannot issue NATS credentials (no CREWYARD_NATS_ISSUER)"
        )
    return g.consumers


def _consumer(state: ConsumerState) -> Consumer:
    return Consumer(
        id=state.consumer_id,
        name=state.name,
        project=state.project,
        durable=state.durable,
        filter_subjects=state.filter_subjects,
        created_at=state.created_at,
        expires_at=state.expires_at,
        revoked_at=state.revoked_at,
    )


@post("/v1/consumers", status_code=201, opt=ADMIN)
async def create_consumer(request: Request[Any, Any, Any], data: ConsumerCreate) -> ConsumerCredentials:
    """NATS credentials that replay and follow one project's runs and deployments, read-only;
    the answer holds them, shown this once."""
    g = gw(request)
    allow(request, project_name(data.project))
    await g.project(data.project)
    # Counted until revoked, expired or not: an expired credential's durable consumer stays on
    # the stream until its revocation removes it.
    held = sum(
        1 for c in (await g.consumer_states()).values() if c.project == data.project and c.revoked_at is None
    )
    _within(
        g.settings.max_consumers,
        held,
        data.project,
        "consumers (expired ones until they are revoked)",
        "CREWYARD_MAX_CONSUMERS",
        "revoke one",
    )
    key = current_key(request)
    try:  # credentials outlive the key that made them no more than keys it makes do
        expires_at = expiry_within(key, _future(data.expires_at))
    except ValueError as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    try:
        issued = await _issuer(g).create(
            data.project, data.name, expires_at=expires_at, created_by=key.key_id if key else None
        )
    except ConsumerError as exc:
        raise bad_request(str(exc)) from None
    return ConsumerCredentials(
        consumer_id=issued.consumer_id,
        name=issued.name,
        project=issued.project,
        stream=issued.stream,
        durable=issued.durable,
        filter_subjects=issued.filter_subjects,
        inbox_prefix=issued.inbox_prefix,
        creds=issued.creds,
        expires_at=issued.expires_at,
    )


@get("/v1/consumers", opt=ADMIN)
async def list_consumers(request: Request[Any, Any, Any], project: str | None = None) -> ConsumerList:
    """Every consumer credential issued (``?project=``: of one project), revoked ones included."""
    g = gw(request)
    shown, only = visible_project(request, project)
    states = [] if not shown else list((await g.consumer_states()).values())
    states = [s for s in states if only is None or s.project == only]
    states.sort(key=lambda s: s.created_at)
    return ConsumerList(consumers=[_consumer(s) for s in states])


@delete("/v1/consumers/{consumer_id:str}", status_code=200, opt=ADMIN)
async def revoke_consumer(request: Request[Any, Any, Any], consumer_id: str) -> Consumer:
    """Revoke a consumer's credentials: it is disconnected at once and its durable deleted."""
    g = gw(request)
    key = current_key(request)
    try:
        state = await _issuer(g).revoke(consumer_id, revoked_by=key.key_id if key else None)
    except ConsumerError:
        raise not_found(f"consumer {consumer_id}") from None
    return _consumer(state)


ROUTES = [
    create_key,
    list_keys,
    get_key,
    revoke_key,
    whoami,
    create_consumer,
    list_consumers,
    revoke_consumer,
]


# -- at start ----------------------------------------------------------------------------------


def admin_key_path(settings: Settings) -> Path:
    """Where the first admin key is kept for the CLI on this machine (readable by its owner)."""
    return settings.data_dir / "admin.key"


def _given_admin_key(settings: Settings) -> str | None:
    if not settings.admin_key_file:
        return None
    path = Path(settings.admin_key_file).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(f"CREWYARD_ADMIN_KEY_FILE: cannot read {path}: {exc.strerror or exc}") from None
    if not well_formed(token):
        raise SettingsError(
            f"CREWYARD_ADMIN_KEY_FILE: {path} holds no API key (make one: crewyard keys generate)"
        )
    return token


async def open_keys(settings: Settings, store: EventStore) -> tuple[KeyRegistry | None, str | None]:
    """The gateway's key registry (None with ``--no-auth``), and the first admin key's token
    when this start made it: it is written to ``<data dir>/admin.key`` (0600) for the caller to
    print once. A first key given by the operator (``admin_key_file``) is registered, not shown."""
    if not settings.auth:
        return None, None
    registry = KeyRegistry(store)
    await registry.start()
    given = _given_admin_key(settings)
    token = await registry.bootstrap(given)
    if token is None or given is not None:
        return registry, None
    path = admin_key_path(settings)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return registry, token
