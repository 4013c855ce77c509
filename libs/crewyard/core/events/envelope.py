"""The envelope every event travels in, its JSON codec, and upcasting of old versions.

Wire format (JSON, readable by any NATS client)::

    {"id": "evt_…", "type": "tool.called", "version": 1, "time": "…Z", "project": "acme",
     "aggregate": "run", "aggregate_id": "run_…", "data": {…}, "correlation_id": …}

Decoding reads the envelope with ``data`` left raw, upcasts the payload dict step by step from
the stored version to today's (small pure functions, see ``UPCASTERS``), then decodes it into
the payload type registered for ``type``. The stream is never rewritten.

Decoding is also the definition of a valid event: anything :func:`decode` refuses raises
:class:`InvalidEvent` (never another exception), and writers append only what
:func:`encode_checked` has passed through :func:`decode`, so nothing the platform writes can stop
its own readers. Events from elsewhere (a newer version, a foreign publisher, an old bug) may
still be in a stream: readers set them aside, and aggregate loads keep their place with
:func:`unreadable` so that folds still see the aggregate's true last sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from crewyard.errors import CrewyardError

from ..bounds import OutOfBounds, check_json
from ..crewfile import CrewConfig
from ..subjects import PLATFORM_SCOPE, PROJECT_PATTERN, TOKEN_PATTERN
from ._base import Payload
from .activity import ACTIVITY_EVENTS
from .deployment import DEPLOYMENT_EVENTS, DeploymentCreated
from .platform import PLATFORM_EVENTS
from .project import PROJECT_EVENTS
from .run import RUN_EVENTS
from .schedule import SCHEDULE_EVENTS
from .table import TABLE_EVENTS, RowsInserted
from .thread import THREAD_EVENTS
from .trigger import TRIGGER_EVENTS
from .webhook import WEBHOOK_EVENTS

#: type tag → payload class; declared once for the whole system.
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (
        *RUN_EVENTS,
        *ACTIVITY_EVENTS,
        *DEPLOYMENT_EVENTS,
        *PROJECT_EVENTS,
        *TABLE_EVENTS,
        *THREAD_EVENTS,
        *WEBHOOK_EVENTS,
        *TRIGGER_EVENTS,
        *SCHEDULE_EVENTS,
        *PLATFORM_EVENTS,
    )
}


def public_types(aggregate: str) -> list[str]:
    """Types of ``aggregate`` stored in their project's own scope (what outside consumers get)."""
    return sorted(
        t for t, cls in PAYLOAD_TYPES.items() if aggregate == cls.AGGREGATE and cls.SCOPE == "project"
    )


def shown_to_clients(event_type: str) -> bool:
    """Whether API clients following a project's events may see this type: stored in the
    project's own scope (older streams also keep env and key events there) and carrying no
    secret (``SEALED``: signing secrets, trigger tokens, webhook URLs). Unknown types are not
    shown."""
    cls = PAYLOAD_TYPES.get(event_type)
    return cls is not None and cls.SCOPE == "project" and not cls.SEALED


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _log_v1_from_v0(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 of ``log`` (pre-release) called the text ``line``."""
    out = dict(data)
    if "line" in out and "message" not in out:
        out["message"] = out.pop("line")
    return out


def _deployment_created_v2_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 had an optional name (None: the single ``[deployment]``) and no environment:
    every deployment that became ready was its project's current one, i.e. production."""
    return {**data, "name": data.get("name") or "default", "environment": "production"}


def _promoted_v2_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 made a deployment its project's current one: production's pointer."""
    return {**data, "environment": "production"}


def _unscoped_v2_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of ``env.set``/``env.unset`` had no environments: it applied to every one."""
    return {**data, "environment": None}


def _run_queued_v2_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 ran the project's current deployment or a given one: production."""
    return {**data, "environment": "production"}


def _apikey_created_v2_from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of ``apikey.created`` (never checked by anything) had no role or expiry. Read it
    as a key that expired before it could be used: it grants nothing, whatever its project."""
    return {**data, "role": "read", "project": None, "expires_at": "1970-01-01T00:00:00Z"}


#: (type, stored version) → function producing version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("log", 0): _log_v1_from_v0,
    ("deployment.created", 1): _deployment_created_v2_from_v1,
    ("deployment.promoted", 1): _promoted_v2_from_v1,
    ("env.set", 1): _unscoped_v2_from_v1,
    ("env.unset", 1): _unscoped_v2_from_v1,
    ("run.queued", 1): _run_queued_v2_from_v1,
    ("apikey.created", 1): _apikey_created_v2_from_v1,
}


class Event(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    version: int
    time: datetime
    project: str
    aggregate: str
    aggregate_id: str
    data: Payload
    correlation_id: str | None = None
    causation_id: str | None = None


# msgspec matches patterns with ``re.search``: anchor with ``\Z`` (``$`` accepts a final newline).
_Token = Annotated[str, msgspec.Meta(pattern=rf"^{TOKEN_PATTERN}\Z")]
#: A project name, or the reserved scope of platform events (which no project can be named).
_Project = Annotated[str, msgspec.Meta(pattern=rf"^(?:{PROJECT_PATTERN}|{PLATFORM_SCOPE})\Z")]
_Version = Annotated[int, msgspec.Meta(ge=0, le=1000)]
_Ref = Annotated[str, msgspec.Meta(max_length=256)]


class _RawEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: _Token
    type: str
    version: _Version
    time: datetime
    project: _Project
    aggregate: Literal[
        "project",
        "deployment",
        "run",
        "webhook",
        "delivery",
        "trigger",
        "schedule",
        "table",
        "apikey",
        "consumer",
        "thread",
    ]
    aggregate_id: _Token
    data: msgspec.Raw
    correlation_id: _Ref | None = None
    causation_id: _Ref | None = None


class InvalidEvent(CrewyardError, ValueError):
    """Bytes that are not a valid event for this version of crewyard (the message says why)."""


class UnknownEventType(InvalidEvent):
    """An event whose type (or version of it) this version of crewyard does not know."""


class Unreadable(Payload, frozen=True, kw_only=True):
    """Stands in for a stored event that does not decode, in an aggregate's history (never on
    the wire: its type is in no table, so it can never be appended)."""

    TYPE = "unreadable"
    AGGREGATE = ""
    reason: str


class Recorded(msgspec.Struct, frozen=True):
    """An event together with its position in the stream."""

    seq: int
    event: Event


_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(_RawEvent)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_payload_decoders = {t: msgspec.json.Decoder(cls) for t, cls in PAYLOAD_TYPES.items()}


def _free_form(cls: type[Payload]) -> tuple[str, ...]:
    """Fields holding arbitrary JSON (inputs, outputs, configs): their bounds are walked."""
    return tuple(
        f.name
        for f in msgspec.structs.fields(cls)
        if f.type is Any or getattr(f.type, "__origin__", None) in (dict, list)
    )


_FREE_FORM = {t: _free_form(cls) for t, cls in PAYLOAD_TYPES.items()}


def _config_is_a_crew_config(payload: Payload) -> None:
    """Builders and runners read a deployment's config as a ``CrewConfig``: one that does not
    convert would fail every delivery of every run of it."""
    assert isinstance(payload, DeploymentCreated)
    msgspec.convert(payload.config, CrewConfig)


def _row_values_are_bounded(payload: Payload) -> None:
    """Rows are free-form JSON inside a typed list: their bounds are walked here."""
    assert isinstance(payload, RowsInserted)
    for row in payload.rows:
        check_json(row.values, "table.rows_inserted row")


#: Checks beyond the payload's own type, per event type (raising msgspec.ValidationError).
_EXTRA_CHECKS: dict[str, Callable[[Payload], None]] = {
    DeploymentCreated.TYPE: _config_is_a_crew_config,
    RowsInserted.TYPE: _row_values_are_bounded,
}


def make_event(
    payload: Payload,
    *,
    project: str,
    aggregate_id: str,
    event_id: str,
    time: datetime | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    return Event(
        id=event_id,
        type=payload.TYPE,
        version=payload.VERSION,
        time=time or datetime.now(UTC),
        project=project,
        aggregate=payload.AGGREGATE,
        aggregate_id=aggregate_id,
        data=payload,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def encode_checked(event: Event) -> bytes:
    """The event's wire bytes, once the core's own decoder has taken them back: what every
    writer appends. Raises :class:`InvalidEvent` naming what is wrong."""
    try:
        body = encode(event)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # e.g. an int of 5,000 digits
        raise InvalidEvent(f"{event.type} event cannot be encoded: {exc}") from None
    decode(body)
    return body


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = PAYLOAD_TYPES[event_type].VERSION
    if version > current:
        raise UnknownEventType(f"{event_type} v{version} is newer than this crewyard reads (v{current})")
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownEventType(f"no upcaster for {event_type} v{version}")
        data = step(data)
        version += 1
    return data


def decode(raw: bytes) -> Event:
    """The event in ``raw``, upcast to today's version; :class:`InvalidEvent` if it is not one."""
    try:
        return _decode(raw)
    except InvalidEvent:
        raise
    # RecursionError: msgspec refuses nesting near the interpreter's limit; ValueError: an
    # integer too long to convert. Both are bad bytes, like any decode error.
    except (msgspec.DecodeError, OutOfBounds, RecursionError, ValueError, TypeError, KeyError) as exc:
        raise InvalidEvent(f"not a valid event: {exc}") from None


#: Types whose events once belonged to another aggregate (``apikey.*`` v1 sat on the project).
_FORMER_AGGREGATE = {"apikey.created": "project", "apikey.revoked": "project"}


def _decode(raw: bytes) -> Event:
    env = _raw_decoder.decode(raw)
    cls = PAYLOAD_TYPES.get(env.type)
    if cls is None:
        raise UnknownEventType(f"unknown event type {env.type!r}")
    if env.aggregate != cls.AGGREGATE and _FORMER_AGGREGATE.get(env.type) != env.aggregate:
        raise InvalidEvent(f"{env.type} belongs to a {cls.AGGREGATE}, not a {env.aggregate}")
    if (env.project == PLATFORM_SCOPE) != (cls.SCOPE == "platform") and env.type not in _FORMER_AGGREGATE:
        raise InvalidEvent(f"{env.type} cannot belong to project {env.project!r}")
    if env.version == cls.VERSION:
        payload = _payload_decoders[env.type].decode(env.data)
    else:
        data = upcast(env.type, env.version, _dict_decoder.decode(env.data))
        payload = msgspec.convert(data, cls)
    for name in _FREE_FORM[env.type]:
        check_json(getattr(payload, name), f"{env.type} {name}")
    extra = _EXTRA_CHECKS.get(env.type)
    if extra is not None:
        extra(payload)
    return Event(
        id=env.id,
        type=env.type,
        version=cls.VERSION,
        time=env.time,
        project=env.project,
        aggregate=env.aggregate,
        aggregate_id=env.aggregate_id,
        data=payload,
        correlation_id=env.correlation_id,
        causation_id=env.causation_id,
    )


def is_current(raw: bytes) -> bool:
    """True when ``raw`` (already known to decode) can be forwarded as is: today's version."""
    try:
        env = _raw_decoder.decode(raw)
    except msgspec.DecodeError:
        return False
    cls = PAYLOAD_TYPES.get(env.type)
    return cls is not None and env.version == cls.VERSION


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unreadable(seq: int, project: str, aggregate: str, aggregate_id: str, reason: str) -> Recorded:
    """A stand-in for the stored event at ``seq`` that does not decode: folds skip its content
    but take its sequence, so a writer's expected sequence is still the aggregate's last."""
    event = Event(
        id="",
        type=Unreadable.TYPE,
        version=0,
        time=_EPOCH,
        project=project,
        aggregate=aggregate,
        aggregate_id=aggregate_id,
        data=Unreadable(reason=reason),
    )
    return Recorded(seq, event)


def to_builtins(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out
