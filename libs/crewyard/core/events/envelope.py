"""The envelope every event travels in, its JSON codec, and upcasting of old versions.

Wire format (JSON, readable by any NATS client)::

    {"id": "evt_…", "type": "tool.called", "version": 1, "time": "…Z", "project": "acme",
     "aggregate": "run", "aggregate_id": "run_…", "data": {…}, "correlation_id": …}

Decoding reads the envelope with ``data`` left raw, upcasts the payload dict step by step from
the stored version to today's (small pure functions, see ``UPCASTERS``), then decodes it into
the payload type registered for ``type``. The stream is never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from ._base import Payload
from .activity import ACTIVITY_EVENTS
from .deployment import DEPLOYMENT_EVENTS
from .project import PROJECT_EVENTS
from .run import RUN_EVENTS

#: type tag → payload class; declared once for the whole system.
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls for cls in (*RUN_EVENTS, *ACTIVITY_EVENTS, *DEPLOYMENT_EVENTS, *PROJECT_EVENTS)
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _log_v1_from_v0(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 of ``log`` (pre-release) called the text ``line``."""
    out = dict(data)
    if "line" in out and "message" not in out:
        out["message"] = out.pop("line")
    return out


#: (type, stored version) → function producing version + 1.
UPCASTERS: dict[tuple[str, int], Upcaster] = {("log", 0): _log_v1_from_v0}


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


class _RawEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    version: int
    time: datetime
    project: str
    aggregate: str
    aggregate_id: str
    data: msgspec.Raw
    correlation_id: str | None = None
    causation_id: str | None = None


class UnknownEventType(ValueError):
    """An event whose type this version of crewyard does not know."""


class Recorded(msgspec.Struct, frozen=True):
    """An event together with its position in the stream."""

    seq: int
    event: Event


_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(_RawEvent)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_payload_decoders = {t: msgspec.json.Decoder(cls) for t, cls in PAYLOAD_TYPES.items()}


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


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    current = PAYLOAD_TYPES[event_type].VERSION
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownEventType(f"no upcaster for {event_type} v{version}")
        data = step(data)
        version += 1
    return data


def decode(raw: bytes) -> Event:
    env = _raw_decoder.decode(raw)
    cls = PAYLOAD_TYPES.get(env.type)
    if cls is None:
        raise UnknownEventType(f"unknown event type {env.type!r}")
    if env.version == cls.VERSION:
        payload = _payload_decoders[env.type].decode(env.data)
    else:
        data = upcast(env.type, env.version, _dict_decoder.decode(env.data))
        payload = msgspec.convert(data, cls)
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
    """True when ``raw`` can be forwarded as is (known type at today's version)."""
    env = _raw_decoder.decode(raw)
    cls = PAYLOAD_TYPES.get(env.type)
    return cls is not None and env.version == cls.VERSION


def to_builtins(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(event)
    return out
