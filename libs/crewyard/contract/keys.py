"""API keys and outside consumers' NATS credentials (both managed with the admin role)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Role = Literal["read", "run", "deploy", "admin"]
#: A project name (the core's pattern; repeated here because the contract imports nothing).
Project = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}\Z")]
KeyName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._@-]*\Z")
]
ConsumerName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}\Z")]
#: A moment with its offset. The gateway takes it only in the future and at most 100 years ahead
#: (which also refuses one with no UTC form, ``9999-12-31T23:59:59-23:59``): that bound depends on
#: the clock, so it is checked where the request is handled, not at decoding.
When = Annotated[datetime, msgspec.Meta(tz=True)]


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new key: ``project`` None covers every project (only a platform-wide admin key may make
    one); a key makes only keys no wider than itself."""

    role: Role
    project: Project | None = None
    name: KeyName = "key"
    #: After this moment the key is refused (must be in the future); None: it never expires.
    expires_at: When | None = None


class Key(msgspec.Struct, kw_only=True):
    id: str
    name: str
    role: str
    project: str | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    #: When the key was last used on any gateway (kept to the minute); None: never.
    last_used_at: str | None = None
    #: The key that made it; None when it was made at start-up, or (seen by a project's key) by
    #: a platform-wide key, whose id a project never learns.
    created_by: str | None = None
    #: Only in the answer that creates the key: the key itself, shown this once.
    token: str | None = None
    #: Only in the answer that revokes the key with ``cascade=true``: the keys made from it (by
    #: it, by those, and so on) that were revoked with it.
    revoked_with: list[str] | None = None


class KeyList(msgspec.Struct, kw_only=True):
    keys: list[Key]


class Identity(msgspec.Struct, kw_only=True):
    """Who a request is: its key (None when the platform runs without keys, ``--no-auth``)."""

    auth: bool
    key: Key | None = None


class ConsumerCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    project: Project
    name: ConsumerName
    expires_at: When | None = None


class Consumer(msgspec.Struct, kw_only=True):
    id: str
    name: str
    project: str
    durable: str
    filter_subjects: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class ConsumerList(msgspec.Struct, kw_only=True):
    consumers: list[Consumer]


class ConsumerCredentials(msgspec.Struct, kw_only=True):
    """What the holder of new consumer credentials needs; ``creds`` is shown this once."""

    consumer_id: str
    name: str
    project: str
    stream: str
    durable: str
    filter_subjects: list[str]
    inbox_prefix: str
    creds: str
    expires_at: datetime | None = None
