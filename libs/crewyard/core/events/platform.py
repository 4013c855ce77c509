"""Platform events: API keys and outside consumers' NATS credentials.

They belong to no project (envelope ``project`` is the reserved ``_platform``) and live in the
platform stream, which only the gateway (and an operator's admin user) can read or write: key
hashes and consumer records are never on a subject a project's consumer or a runner can reach.
"""

from __future__ import annotations

from datetime import datetime

from ._base import Payload


class ApiKeyCreated(Payload, frozen=True, kw_only=True):
    """An API key. Only the SHA-256 of the token is stored; the token is shown once.

    ``project`` None means every project (platform-wide). Version 1 (before roles) belonged to a
    project's subjects and had no role or expiry."""

    TYPE = "apikey.created"
    AGGREGATE = "apikey"
    VERSION = 2
    SCOPE = "platform"
    key_id: str
    name: str
    token_sha256: str
    role: str
    project: str | None = None
    expires_at: datetime | None = None
    created_by: str | None = None


class ApiKeyRevoked(Payload, frozen=True, kw_only=True):
    TYPE = "apikey.revoked"
    AGGREGATE = "apikey"
    SCOPE = "platform"
    key_id: str
    revoked_by: str | None = None
    #: The keys made from it end too — those made so far and any made later (by it, by those, and
    #: so on): a key that leaked cannot leave working keys behind, on any gateway, in any order.
    cascade: bool = False


class ConsumerCreated(Payload, frozen=True, kw_only=True):
    """NATS credentials for one outside consumer of one project: a durable JetStream consumer the
    platform made (``durable``, ``filter_subjects``) and the public key of the user allowed to
    pull from it. The credentials themselves are never stored."""

    TYPE = "consumer.created"
    AGGREGATE = "consumer"
    SCOPE = "platform"
    name: str
    project: str
    durable: str
    user_public_key: str
    filter_subjects: list[str]
    expires_at: datetime | None = None
    created_by: str | None = None


class ConsumerRevoked(Payload, frozen=True, kw_only=True):
    TYPE = "consumer.revoked"
    AGGREGATE = "consumer"
    SCOPE = "platform"
    revoked_by: str | None = None


PLATFORM_EVENTS: tuple[type[Payload], ...] = (
    ApiKeyCreated,
    ApiKeyRevoked,
    ConsumerCreated,
    ConsumerRevoked,
)
