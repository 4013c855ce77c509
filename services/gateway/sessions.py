"""Browser sessions: the console's signed-in browsers, as the access guard sees them.

A session cookie (:mod:`crewyard.core.sessions`) stands for one API key: the guard takes it in
place of ``Authorization: Bearer`` when a request has no such header, looking the key up again
each time (a revoked or expired key ends its sessions at once), and refusing a session signed
out on any gateway (:mod:`crewyard.auth.sessions`). Requests that change something
with a session must carry its CSRF token: forms as the ``_csrf`` field (checked by the console's
form handlers, routes marked ``opt={"form": True}``), anything else as ``X-CSRF-Token``.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Any

from crewyard.auth.sessions import EndedSessions
from crewyard.core.access import ApiKey
from crewyard.core.sessions import Session, SessionCodec
from crewyard.eventstore import EventStore
from crewyard.settings import Settings

from .context import Gateway

COOKIE = "crewyard_session"
#: Where ``scope`` keeps the CSRF token of the request's session (or of its double-submit cookie).
CSRF_SCOPE = "crewyard.csrf"
#: Set in ``scope`` when the request was authenticated by a session cookie.
SESSION_SCOPE = "crewyard.session"
CSRF_HEADER = "x-csrf-token"


def codec(g: Gateway) -> SessionCodec:
    return SessionCodec(g.secrets.derive("console-sessions"))


def open_session(g: Gateway, cookie: str | None) -> Session | None:
    """The live session of a cookie: None for no cookie, a bad or expired one, one signed out."""
    if not cookie or g.keys is None or g.ended_sessions is None:
        return None
    session = codec(g).open(cookie, time.time())
    if session is None or g.ended_sessions.ended(session):
        return None
    return session


def session_key(g: Gateway, cookie: str | None, scope: Any) -> ApiKey | None:
    """The usable key of a session cookie (None: no live session, or a key no longer usable);
    the session's CSRF token is left in ``scope``."""
    session = open_session(g, cookie)
    key = g.keys.keys.get(session.key_id) if session is not None and g.keys is not None else None
    if session is None or key is None or not key.usable(datetime.now(UTC)):
        return None
    scope[CSRF_SCOPE] = codec(g).csrf(session)
    scope[SESSION_SCOPE] = True
    return key


def csrf_header_ok(scope: Any, header: str | None) -> bool:
    expected = scope.get(CSRF_SCOPE)
    if not isinstance(expected, str) or not header or not header.isascii():
        return False
    return hmac.compare_digest(header, expected)


async def open_ended_sessions(settings: Settings, store: EventStore) -> EndedSessions | None:
    """The signed-out sessions this gateway follows (None with ``--no-auth``: no sessions)."""
    if not settings.auth:
        return None
    ended = EndedSessions(store)
    await ended.start()
    return ended
