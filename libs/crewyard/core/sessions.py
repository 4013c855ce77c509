"""Browser sessions of the console (pure): what a session cookie carries and how it is checked.

Signing in exchanges an API key for a session once; the browser then holds only the session
cookie, never the key. The cookie names the key (its id, not its token), an expiry and a random
nonce, signed with HMAC-SHA256 under a key derived from the platform's secret key — every
gateway with the same secret key accepts it until it expires. Each use looks the key up again,
so a revoked or expired key ends its sessions at once; a session signed out earlier is recorded
by :func:`session_ref` in a bucket every gateway follows (``crewyard.auth.sessions``). The
CSRF token of a session is the HMAC of its nonce under another derived key: a page can repeat
it, a foreign page cannot know it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

import msgspec

#: How long a session lasts from sign-in (a key's own expiry ends it sooner).
SESSION_TTL_S = 12 * 3600
_MAX_COOKIE = 512


class Session(msgspec.Struct, frozen=True):
    key_id: str
    nonce: str
    expires: int  # Unix seconds


class _Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    k: str
    n: str
    e: int


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(_Payload)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive(secret: bytes, purpose: str) -> bytes:
    """A key for one purpose from the platform's secret key (never the key itself)."""
    return hmac.new(secret, f"crewyard:{purpose}".encode(), hashlib.sha256).digest()


class SessionCodec:
    def __init__(self, secret: bytes) -> None:
        self._sign = derive(secret, "console-session")
        self._csrf = derive(secret, "console-csrf")

    def issue(
        self,
        key_id: str,
        now: float,
        *,
        ttl_s: int = SESSION_TTL_S,
        rand: Callable[[int], str] = secrets.token_urlsafe,
    ) -> tuple[str, Session]:
        """A cookie value for a new session of ``key_id``, and the session."""
        session = Session(key_id=key_id, nonce=rand(16), expires=int(now) + ttl_s)
        payload = _b64(_enc.encode(_Payload(k=session.key_id, n=session.nonce, e=session.expires)))
        return f"{payload}.{self._mac(payload)}", session

    def open(self, cookie: str, now: float) -> Session | None:
        """The session a cookie carries; None if it is malformed, forged or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE or cookie.count(".") != 1 or not cookie.isascii():
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = _dec.decode(_unb64(payload))
        except (msgspec.DecodeError, binascii.Error, ValueError):
            return None
        if data.e <= now:
            return None
        return Session(key_id=data.k, nonce=data.n, expires=data.e)

    def csrf(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf, session.nonce.encode(), hashlib.sha256).digest())

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._sign, payload.encode(), hashlib.sha256).digest())


def session_ref(session: Session) -> str:
    """The name an ended session is recorded under: a hash of its nonce (the record holds
    nothing that would help forge a cookie or its CSRF token)."""
    return hashlib.sha256(f"crewyard-session:{session.nonce}".encode()).hexdigest()[:40]
