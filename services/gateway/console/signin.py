"""Signing in: an API key is exchanged once for a session cookie; the browser never keeps the key.

``POST /login`` takes the key from a form (never a URL), checks it like the API does, and answers
with ``Set-Cookie`` of a signed session (:mod:`crewyard.core.sessions`): ``HttpOnly`` (no script
reads it), ``SameSite=Strict`` (no other site's page sends it), ``Secure`` over TLS, ``Path=/``,
lasting until the session expires. The access guard then takes the cookie in place of a bearer
key — looking the key up again on every request, so revoking a key ends its sessions — and asks
mutating requests made with it for the session's CSRF token. ``POST /logout`` ends the session
on every gateway (:mod:`crewyard.auth.sessions`: a copy of the cookie stops working too) and
clears the cookie.

Failed sign-ins count against the same per-address limit as the API's failed authentications
(:func:`..access._count_failure`, one set of buckets, an IPv6 address's /64 as one): a wrong key
from an address whose bucket is empty, from wrong keys sent to either, is answered 429 with
``Retry-After``, so the form is no faster a way to try keys than the API. A right key signs in
all the same, as it passes at the API: whoever shares the address (a NAT, a proxy, loopback)
could otherwise keep everyone on it out with a few wrong keys a second.

Successful sign-ins are limited too, per key (``SIGN_INS_PER_HOUR`` in bursts of
``SIGN_IN_BURST``, per gateway): every session signed out is remembered by every gateway until it
would have expired, and signing in and out in a loop (any key may) grew that record by a hundred
entries a second.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from crewyard.core.sessions import SESSION_TTL_S

from ..access import _count_failure
from ..context import gw
from ..limits import Buckets, TooMany
from ..sessions import COOKIE, codec, open_session, session_key
from .csrf import checked_form
from .render import page

OPEN = {"open": True, "form": True}


def _cookie(value: str, max_age: int, secure: bool) -> str:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{flags}"


def _next(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never ``//host`` or a scheme)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")) and value.isprintable():
        return value
    return "/"


@get("/login", opt={"open": True}, include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Response[str]:
    return page(
        request, "login.html", next=_next(request.query_params.get("next")), failed=False, limited=0, nav=""
    )


FAILED_HERE = "Too many failed attempts from this address"
#: A key's successful sign-ins an hour, on one gateway, and how many may come at once.
SIGN_INS_PER_HOUR, SIGN_IN_BURST = 120, 60


def _sign_in_wait(request: Request[Any, Any, Any], key_id: str) -> float:
    """Take one of ``key_id``'s sign-ins: 0, or the seconds until it may sign in again."""
    state = request.app.state
    buckets: Buckets | None = getattr(state, "sign_in_buckets", None)
    if buckets is None:
        buckets = state.sign_in_buckets = Buckets(SIGN_INS_PER_HOUR / 3600, burst=SIGN_IN_BURST)
    return buckets.take(key_id)


def _slow_down(request: Request[Any, Any, Any], form: dict[str, str], wait: float, why: str) -> Response[str]:
    """429: the sign-in form again, saying why and how long to wait (also as ``Retry-After``)."""
    seconds = TooMany(wait, why).headers["Retry-After"]
    response = page(
        request,
        "login.html",
        status=429,
        next=_next(form.get("next")),
        failed=False,
        limited=int(seconds),
        limited_why=why,
        nav="",
    )
    response.headers["Retry-After"] = seconds
    return response


@post("/login", opt=OPEN, include_in_schema=False)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    g = gw(request)
    form = await checked_form(request)
    # As the API: only failures are counted and refused. A right key signs in even while its
    # address is refused — whoever shares the address (a NAT, a proxy, loopback) could otherwise
    # keep everyone on it out with a few wrong keys a second; a 256-bit key is not guessed.
    token = form.get("key", "").strip()
    key = g.keys.authenticate(token) if g.keys is not None and token else None
    if key is None:
        try:
            _count_failure(request, g)
        except TooMany as limited:
            return _slow_down(request, form, float(limited.headers["Retry-After"]), FAILED_HERE)
        return page(
            request, "login.html", status=401, next=_next(form.get("next")), failed=True, limited=0, nav=""
        )
    wait = _sign_in_wait(request, key.key_id)
    if wait:
        return _slow_down(request, form, wait, "Too many sign-ins with this key")
    value, _session = codec(g).issue(key.key_id, time.time())
    response = Redirect(_next(form.get("next")), status_code=303)
    response.headers["Set-Cookie"] = _cookie(value, SESSION_TTL_S, request.url.scheme == "https")
    return response


@post("/logout", opt=OPEN, include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    # An open route (a dead session may sign out too): the session's own token, if it has one.
    g = gw(request)
    session_key(g, request.cookies.get(COOKIE), request.scope)
    await checked_form(request)
    session = open_session(g, request.cookies.get(COOKIE))
    if session is not None and g.ended_sessions is not None:
        # Raises StoreUnavailable when it cannot be recorded: the browser keeps its cookie and
        # the person is told to try again, rather than believing a copied cookie is dead.
        await g.ended_sessions.end(session)
    response = Redirect("/login", status_code=303)
    response.headers["Set-Cookie"] = _cookie("", 0, request.url.scheme == "https")
    return response


def sign_in_here(request: Request[Any, Any, Any]) -> Response[str]:
    """What a page answers a browser that is not signed in (or whose session ended): 401, and
    the sign-in form, which comes back to this page."""
    here = str(request.url.path) + ("?" + request.url.query if request.url.query else "")
    return page(request, "login.html", status=401, next=_next(here), failed=False, limited=0, nav="")


ROUTES = [login_page, login, logout]
