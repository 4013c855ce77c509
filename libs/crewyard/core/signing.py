"""Signatures on webhook requests, both ways (pure).

Outgoing deliveries follow Standard Webhooks (https://www.standardwebhooks.com):

    webhook-id: <delivery id>            webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

where the secret reads ``whsec_<base64 key>``; during a secret rotation the header carries one
``v1,…`` entry per valid secret, separated by spaces. They also carry the reference product's
headers, so receivers written for it work unchanged:

    X-Crewship-Event: run.succeeded      X-Crewship-Delivery: <delivery id>
    X-Crewship-Timestamp: <unix seconds>
    X-Crewship-Signature: <hex HMAC-SHA256(secret as text, "<timestamp>.<body>")>

Incoming triggers may require a GitHub-style signature: ``sha256=<hex HMAC-SHA256(secret, body)>``
in a header of the trigger's choosing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Mapping

from crewyard.errors import CrewyardError

SECRET_PREFIX = "whsec_"


class SignatureError(CrewyardError, ValueError):
    """A secret that is not ``whsec_<base64>``."""


def new_secret(rand: Callable[[int], bytes] = os.urandom) -> str:
    return SECRET_PREFIX + base64.b64encode(rand(32)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise SignatureError("a signing secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise SignatureError("a signing secret is whsec_ followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature entry: ``v1,<base64>``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def crewship_signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def delivery_headers(
    secrets: list[str], *, delivery_id: str, event: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Every signing header of one delivery; ``secrets`` (clear text) newest first."""
    return {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, delivery_id, timestamp, body) for s in secrets),
        "X-Crewship-Event": event,
        "X-Crewship-Delivery": delivery_id,
        "X-Crewship-Timestamp": str(timestamp),
        "X-Crewship-Signature": crewship_signature(secrets[0], timestamp, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (and our tests): the id, timestamp and one matching ``v1`` entry."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower.get("webhook-id"), lower.get("webhook-timestamp", "")
    if not msg_id or not ts.isascii() or not ts.isdigit() or abs(now - int(ts)) > tolerance_s:
        return False
    expected = sign(secret, msg_id, int(ts), body).encode()
    return any(
        hmac.compare_digest(expected, part.encode("utf-8", "replace"))
        for part in lower.get("webhook-signature", "").split()
    )


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def looks_like_github_signature(header_value: str | None) -> bool:
    """The shape of :func:`github_signature` (``sha256=`` and 64 hex digits): anything else is
    refused before a secret is decrypted or a body read for it."""
    value = (header_value or "").strip()
    return (
        len(value) == 71 and value.startswith("sha256=") and all(c in "0123456789abcdef" for c in value[7:])
    )


def verify_github(secret: str, header_value: str | None, body: bytes) -> bool:
    if not header_value:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a header may carry any).
    given = header_value.strip().encode("utf-8", "replace")
    return hmac.compare_digest(github_signature(secret, body).encode(), given)
