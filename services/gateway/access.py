"""Who may call which route: one guard, driven by each route's metadata.

Every route declares what it needs in its ``opt``: ``{"role": "read" | "run" | "deploy" |
"admin"}``, or ``{"open": True}`` for the few routes anyone may call (health, documents,
incoming trigger URLs). A route that declares neither is refused (and the app refuses to start).
``{"platform": True}`` with a role: what the route shows is of every project (``/metrics``), so
only a platform-wide key (no project) with the role may call it; a project's key gets 403.
``{"body": "gzip"}`` marks the one route whose body is not JSON (the upload); ``{"page": True}``
the console's pages, whose HTML forms carry a CSRF token of their own instead.

The guard, for every request to a route that is not open:

1. authenticates the bearer key (missing, malformed, unknown, revoked or expired: 401 with
   ``WWW-Authenticate: Bearer``) and puts it in ``request.scope["auth"]``; a request without an
   ``Authorization`` header may instead carry a console session cookie (:mod:`.sessions`),
   which stands for its key as long as the key is usable;
2. finds the project the route touches: the ``{project}`` path parameter, else the project of
   the resource a path parameter names (``run_id``, ``dep_id``, ``thread_id``, ``table_id``…,
   see ``RESOURCES``). Another project's resource answers 404 exactly as a missing one does: a
   key never learns whether another project exists. A valid key without the role: 403;
3. refuses what a web page could send cross-site: a body that is not JSON (gzip for the upload),
   a POST without a body and without an ``Authorization`` header; with a session, anything
   mutating without the session's CSRF token (``X-CSRF-Token``; console forms carry it as a
   field their handlers check);
4. rate limits mutating requests per key, and failed authentications per client address (429
   with ``Retry-After``).

Routes whose project is in the body or the query (``POST /v1/runs``, listings) leave the check to
their handler: :func:`allow` (one project) or :func:`visible_project` (what a listing may show).
A handler that forgets is caught: :class:`.frontdoor.AccessMiddleware` turns its success into a 500 for
project keys, so nothing of another project leaves (and the access-matrix test fails).

The guard runs as the app's ``before_request`` hook (:func:`authorize`), before a route's body is
read; the app refuses to start with a route the hook would not run for first (see
``check_access_rules``), as with one without a rule.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from crewyard.core.access import ROLES, ApiKey, decide, rank
from crewyard.core.ids import deployment_id as stored_id
from crewyard.core.ids import is_id
from crewyard.counts import adjust

from .context import Gateway
from .errors import ApiError, not_found
from .limits import Buckets, TooMany
from .sessions import COOKIE as SESSION_COOKIE
from .sessions import CSRF_HEADER, SESSION_SCOPE, csrf_header_ok, open_session, session_key
from .sse import STILL_ALLOWED

log = logging.getLogger("crewyard.gateway")
#: Where the guard leaves its findings in the ASGI scope (``scope["auth"]`` is the key itself).
STATE = "crewyard.access"
#: Where an event stream's request notes the key whose stream place it holds.
STREAM_PLACE = "crewyard.stream"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip", "application/x-tar+gzip"})
_CHALLENGE = 'Bearer realm="crewyard"'


@dataclass
class Access:
    key: ApiKey | None
    #: The handler must still check the project (it is in the body or the query).
    pending: bool = False
    checked: bool = False


class Unauthorized(ApiError):
    def __init__(self, message: str, *, bad_token: bool) -> None:
        super().__init__(401, "unauthorized", message)
        challenge = f'{_CHALLENGE}, error="invalid_token"' if bad_token else _CHALLENGE
        self.headers = {"WWW-Authenticate": challenge}


def forbidden(key: ApiKey, needed: str) -> ApiError:
    return ApiError(403, "forbidden", f"this API key's role ({key.role}) may not do this: it needs {needed}")


# -- the project a resource belongs to ---------------------------------------------------------

#: What a lookup finds: a row (or anything with a ``project``) of the resource, None if missing.
Find = Callable[[Gateway, str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class Resource:
    """A kind of resource a path parameter names, and how to find the project it belongs to."""

    #: How its 404 names it (``run``, ``API key`` …).
    noun: str
    find: Find
    #: How its 404 spells the id (a deployment's as stored, whichever spelling was asked).
    spell: Callable[[str], str] = str

    def missing(self, value: str) -> ApiError:
        """The 404 of a missing one, the same for one of another project."""
        return not_found(f"{self.noun} {self.spell(value)}")

    async def project(self, g: Gateway, value: str) -> str | None:
        """Its project (None: a platform-wide resource); the 404 if it does not exist."""
        found = await self.find(g, value)
        if found is None:
            raise self.missing(value)
        owner = found["project"]
        return None if owner is None else str(owner)


def _in_read_model(prefix: str, read: Find) -> Find:
    """A read model row by a well-formed id; on a miss, once more after the read model has
    caught up (it may have been created through another gateway a moment ago)."""

    async def find(g: Gateway, value: str) -> Mapping[str, Any] | None:
        if not is_id(value, prefix):
            return None
        row = await read(g, value)
        if row is None:
            await g.fresh()
            row = await read(g, value)
        return row

    return find


async def _key(g: Gateway, key_id: str) -> Mapping[str, Any] | None:
    key = g.keys.keys.get(key_id) if g.keys is not None else None
    return None if key is None else {"project": key.project}


async def _consumer(g: Gateway, consumer_id: str) -> Mapping[str, Any] | None:
    state = (await g.consumer_states()).get(consumer_id)
    return None if state is None else {"project": state.project}


#: Path parameter → the resource it names. Runs, deployments, tables and threads are looked up the
#: way their own routes look them up (no 404 for one the stream has and the read model not yet).
RESOURCES: dict[str, Resource] = {
    "run_id": Resource("run", lambda g, v: g.run(v)),
    "dep_id": Resource("deployment", lambda g, v: g.deployment(v), spell=stored_id),
    "webhook_id": Resource("webhook", _in_read_model("whk", lambda g, v: g.rm.webhook(v))),
    "table_id": Resource("table", lambda g, v: g.table(v)),
    "thread_id": Resource("thread", lambda g, v: g.thread_owner(v)),
    "key_id": Resource("API key", _key),
    "consumer_id": Resource("consumer", _consumer),
}


# -- the guard ---------------------------------------------------------------------------------


def _gateway(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway:
    gateway: Gateway = connection.app.state.gateway
    return gateway


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None when there is no such header.
    Anything else in the header is a malformed request, refused like a wrong key."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("the Authorization header must read: Bearer <API key>", bad_token=True)
    return token.strip()


def _authorization(scope: Any) -> str | None:
    """The ``Authorization`` header, read from the ASGI scope as it is (building the request's
    headers object for it cost more than the rest of a key's check)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None


def _authenticate(connection: ASGIConnection[Any, Any, Any, Any], g: Gateway) -> ApiKey:
    header = _authorization(connection.scope)
    if header is None:  # a browser signed in to the console: its session stands for its key
        session = session_key(g, connection.cookies.get(SESSION_COOKIE), connection.scope)
        if session is not None:
            g.keys.touch(session)  # type: ignore[union-attr]  # a session needs the registry
            return session
    token = bearer_token(header)
    if not token:
        raise Unauthorized(
            "an API key is required: send Authorization: Bearer <API key> (crewyard login, or"
            " CREWYARD_API_KEY)",
            bad_token=False,
        )
    key = g.keys.authenticate(token) if g.keys is not None else None
    if key is None:
        raise Unauthorized("the API key is not valid (unknown, revoked or expired)", bad_token=True)
    g.keys.touch(key)  # type: ignore[union-attr]  # authenticated above, so the registry exists
    return key


async def _check_project(g: Gateway, key: ApiKey, needed: str, params: dict[str, Any]) -> bool:
    """Raise 404 or 403 as the key may not act on the route's project; True when the handler
    must still check it (it is in the body or the query)."""
    if key.project is None:
        if rank(key.role) < rank(needed):
            raise forbidden(key, needed)
        return False
    decision: str | None = None
    missing: ApiError | None = None
    project = params.get("project")
    if isinstance(project, str):
        decision, missing = decide(key, needed, project), not_found(f"project {project}")
    for name, resource in RESOURCES.items():
        value = params.get(name)
        if decision not in (None, "ok") or not isinstance(value, str):
            continue
        # Every resource the path names must be the key's project's (and the path's project's):
        # /v1/projects/mine/webhooks/<another project's id> is as missing as any unknown id.
        owner = await resource.project(g, value)
        missing = resource.missing(value)
        if owner is None or (isinstance(project, str) and owner != project):
            decision = "not_found"
        else:
            decision = decide(key, needed, owner)
    if decision is None:
        if rank(key.role) < rank(needed):
            raise forbidden(key, needed)
        return True
    if decision == "not_found":
        raise missing or not_found("this")
    if decision == "forbidden":
        raise forbidden(key, needed)
    return False


def _check_shape(connection: ASGIConnection[Any, Any, Any, Any], opt: dict[str, Any]) -> None:
    """What no web page can send cross-site without a preflight (which CORS refuses): a JSON
    (or, for the upload, gzip) body, or — for a POST without one — an Authorization header."""
    method = connection.scope.get("method", "GET")
    if method not in MUTATING or opt.get("page") is True:
        return  # a console form: its own CSRF token (``console.csrf``) is what a page cannot send
    headers = connection.headers
    if connection.scope.get(SESSION_SCOPE):
        _session_sent_it(connection)
        return
    has_body = headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if has_body:
        if opt.get("body") == "gzip":
            if media not in GZIP_TYPES:
                raise ApiError(
                    415, "unsupported_media_type", "send the crew as Content-Type: application/gzip"
                )
        elif media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")
        ):
            raise ApiError(
                415, "unsupported_media_type", "send the request body as Content-Type: application/json"
            )
    elif method == "POST" and "authorization" not in headers:
        raise ApiError(
            403,
            "forbidden",
            "a POST without a body needs an Authorization header (a web page cannot send one)",
        )


def _session_sent_it(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """A browser session's cookie comes with every request its browser makes to this origin —
    an image in a page, a link followed — so only the session's CSRF token, sent as a header,
    shows that the console itself asked for a change."""
    if not csrf_header_ok(connection.scope, connection.headers.get(CSRF_HEADER)):
        raise ApiError(403, "csrf", f"a request made with a console session needs its {CSRF_HEADER} header")


def _rate_limit(connection: ASGIConnection[Any, Any, Any, Any], g: Gateway, who: str) -> None:
    if connection.scope.get("method") not in MUTATING or g.settings.rate_limit <= 0:
        return
    state = connection.app.state
    buckets: Buckets | None = getattr(state, "key_buckets", None)
    if buckets is None:
        rate = g.settings.rate_limit
        buckets = state.key_buckets = Buckets(rate, burst=10 * rate)
    wait = buckets.take(who)
    if wait:
        raise TooMany(wait, "too many requests with this API key; slow down")


def _take_stream_place(scope: Any, g: Gateway, key_id: str) -> None:
    """An event stream (a route with ``opt["stream"]``) holds one of its key's places on this
    gateway until its response ends (:func:`release_stream_place`, from the front door): a key
    cannot hold every connection the gateway has, whatever addresses it comes from."""
    cap = g.settings.streams_per_key
    if cap <= 0:
        return
    held = g.streams.get(key_id, 0)
    if held >= cap:
        raise TooMany(
            5,
            f"this API key has {cap} event streams open on this gateway; close one first",
            "too_many_streams",
        )
    g.streams[key_id] = held + 1
    scope[STREAM_PLACE] = key_id


def release_stream_place(g: Gateway, scope: Any) -> None:
    """Give back the stream place a request held, if any (once its response has ended)."""
    key_id = scope.pop(STREAM_PLACE, None)
    if key_id is None:
        return
    adjust(g.streams, key_id, -1)


def _count_failure(connection: ASGIConnection[Any, Any, Any, Any], g: Gateway, what: str = "API key") -> None:
    """A client address that keeps failing to authenticate gets 429 instead of 401 (a valid key
    from it still passes: only failures are counted and refused). ``what`` failed: an API key, a
    trigger URL."""
    rate = g.settings.auth_fail_limit
    if rate <= 0:
        return
    state = connection.app.state
    buckets: Buckets | None = getattr(state, "auth_fail_buckets", None)
    if buckets is None:
        buckets = state.auth_fail_buckets = Buckets(rate, burst=10 * rate)
    client = connection.client.host if connection.client else "unknown"
    wait = buckets.take(address_block(client))
    if wait:
        raise TooMany(wait, f"too many requests without a valid {what} from this address; slow down")


def address_block(host: str) -> str:
    """What failures are counted per: an IPv4 address, or an IPv6 address's /64 (one machine
    commonly holds a whole /64: counted per address, it could try 2**64 times as often)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def authorize(request: Request[Any, Any, Any]) -> None:
    """The guard as every route's ``before_request`` hook (the app's: ``check_access_rules``
    refuses to start when a route resolves another). Not as a Litestar guard: Litestar hands each
    guard a copy of the route's handler, made for every request — about 35 µs, an eighth of what
    a request to ``/healthz`` cost. It runs before the body, the query and the path parameters are
    read and the handler is called; after a route's own guards, which only open routes may have."""
    await guard(request, request.route_handler)


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The one authorization check of every route (see the module's docstring)."""
    opt = handler.opt
    if opt.get("open") is True or connection.scope.get("method") == "OPTIONS":
        return
    needed = opt.get("role")
    if needed not in ROLES:
        log.error("route %s declares no role (opt={'role': …} or {'open': True}): refused", handler)
        raise ApiError(500, "internal", "this route declares no access rule; it is refused")
    g = _gateway(connection)
    scope: Any = connection.scope
    if not g.settings.auth:  # --no-auth: loopback only, one local user
        scope["auth"], scope[STATE] = None, Access(key=None)
        _check_shape(connection, opt)
        _rate_limit(connection, g, "anonymous")
        return
    try:
        key = _authenticate(connection, g)
    except Unauthorized:
        _count_failure(connection, g)
        raise
    scope["auth"] = key
    _rate_limit(connection, g, key.key_id)
    if opt.get("platform") is True and key.project is not None:
        raise ApiError(403, "forbidden", "this shows every project: it needs a platform-wide key")
    pending = await _check_project(g, key, needed, dict(connection.path_params))
    scope[STATE] = Access(key=key, pending=pending)
    _check_shape(connection, opt)
    if opt.get("stream") is True:
        _take_stream_place(scope, g, key.key_id)
        scope[STILL_ALLOWED] = _still_allowed(connection, g, key)


def _still_allowed(
    connection: ASGIConnection[Any, Any, Any, Any], g: Gateway, key: ApiKey
) -> Callable[[], bool]:
    """Whether a stream's request would still be let in: its key not revoked or expired and, for
    a console session, the session not signed out (on any gateway) or expired. Asked before each
    of the stream's writes (:data:`.sse.STILL_ALLOWED`), so both are lookups in memory: the
    registry of keys and the signed-out sessions, which this gateway follows from the stream."""
    session = (
        open_session(g, connection.cookies.get(SESSION_COOKIE))
        if connection.scope.get(SESSION_SCOPE)
        else None
    )
    keys, ended = g.keys, g.ended_sessions

    def allowed() -> bool:
        current = keys.keys.get(key.key_id) if keys is not None else None
        if current is None or not current.usable(datetime.now(UTC)):
            return False
        if session is None:
            return True
        return session.expires > time.time() and not (ended is not None and ended.ended(session))

    return allowed


# -- what handlers call when the project is in the body or the query ---------------------------


def _access(request: Request[Any, Any, Any]) -> Access:
    state = request.scope.get(STATE)
    if not isinstance(state, Access):  # an open route, or a handler called outside the guard
        raise ApiError(500, "internal", "this route's access was not checked")
    return state


def current_key(request: Request[Any, Any, Any]) -> ApiKey | None:
    """The request's API key (None with ``--no-auth``)."""
    return _access(request).key


def require_role(request: Request[Any, Any, Any], needed: str) -> None:
    """403 unless the key also has ``needed``: for a request that asks for more than its
    route's role gives (a stream of a run that cancels the run when its reader goes away). That
    is a change made by a GET, so with a console session it needs the CSRF header as a POST does."""
    key = _access(request).key
    if key is not None and rank(key.role) < rank(needed):
        raise forbidden(key, needed)
    if request.scope.get(SESSION_SCOPE):
        _session_sent_it(request)


def allow(request: Request[Any, Any, Any], project: str, missing: ApiError | None = None) -> None:
    """Unless the key covers ``project``, the 404 of a missing project (or ``missing``: the 404
    of the missing resource the request named, e.g. a deployment by its id)."""
    state = _access(request)
    if state.key is not None and not state.key.covers(project):
        raise missing or not_found(f"project {project}")
    state.checked = True


def visible_project(request: Request[Any, Any, Any], asked: str | None = None) -> tuple[bool, str | None]:
    """What a listing may show: (anything at all, the one project to show or None for every one).
    ``asked`` is the project the request filters on; another project shows nothing."""
    state = _access(request)
    state.checked = True
    if state.key is None or state.key.project is None:
        return True, asked
    if asked is not None and asked != state.key.project:
        return False, asked
    return True, state.key.project


def scoped_by_handler(request: Request[Any, Any, Any]) -> None:
    """The handler shows only what :func:`current_key` covers, by its own means (the console's
    pages filter everything by their viewer; their error pages are drawn for refused requests too)."""
    state = request.scope.get(STATE)
    if isinstance(state, Access):
        state.checked = True


def platform_wide(request: Request[Any, Any, Any]) -> bool:
    """Whether the key covers every project (``--no-auth`` counts as such)."""
    state = _access(request)
    state.checked = True
    return state.key is None or state.key.project is None
