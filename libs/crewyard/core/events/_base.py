"""Base class of every event payload."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

#: Where an event type lives (see :mod:`crewyard.core.subjects`): its project's own scope,
#: the reserved secret scope of the events stream, or the platform stream.
Scope = Literal["project", "secret", "platform"]


class Payload(msgspec.Struct, frozen=True, kw_only=True):
    """A typed event payload. ``TYPE`` is the stable wire tag, ``AGGREGATE`` its aggregate kind,
    ``VERSION`` the schema version written today, ``SCOPE`` where it is stored."""

    TYPE: ClassVar[str]
    AGGREGATE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    SCOPE: ClassVar[Scope] = "project"
    #: Carries a secret, even encrypted or hashed (a signing secret, a token's hash, a webhook URL
    #: whose path may hold a receiver's token): stored in its project's scope for the services,
    #: but never streamed to API clients.
    SEALED: ClassVar[bool] = False
