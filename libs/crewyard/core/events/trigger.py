"""Incoming trigger events: a secret URL (``/webhooks/runs/<token>``) that starts runs.

Only the token's SHA-256 is stored: a token is 256 random bits, so its hash is all a lookup needs.
A signing secret for senders that sign their requests (GitHub-style HMAC) must be recovered to
verify, so it is stored encrypted.
"""

from __future__ import annotations

from typing import Any

from ._base import Payload


class TriggerCreated(Payload, frozen=True, kw_only=True):
    TYPE = "trigger.created"
    AGGREGATE = "trigger"
    SEALED = True
    name: str
    token_sha256: str
    deployment_id: str | None = None
    environment: str = "production"
    #: Run input built from the request body (see :mod:`crewyard.core.triggers`); None: the body.
    template: dict[str, Any] | None = None
    #: Header carrying ``sha256=<hex HMAC of the body>`` when the sender signs; None: unsigned.
    signature_header: str | None = None
    #: The HMAC secret, encrypted.
    signature_secret: str | None = None


class TriggerRevoked(Payload, frozen=True, kw_only=True):
    TYPE = "trigger.revoked"
    AGGREGATE = "trigger"


TRIGGER_EVENTS: tuple[type[Payload], ...] = (TriggerCreated, TriggerRevoked)
