"""What every route taking an ``Idempotency-Key`` does (``POST /v1/runs``, a deployment upload, a
trigger's URL, a table's row insert), so a repeat is answered the same way wherever it is sent.

1. The read model is asked for what the key made earlier: found, the repeat must carry the same
   request (its hash, :func:`same_request`) and is answered with that.
2. Else the creating event is appended with an event id derived from the project and the key
   (for runs :func:`crewyard.launch.idempotent_event_id`): a repeat made at the same moment is
   dropped by the stream as a duplicate, and its acknowledgement names the first one's sequence.
3. That first event is read from the stream's leader (a replica may not have it yet) and must be
   of the same request too (:func:`first_event`).

The hash is of the request as the client sent it, so a repeat after an upgrade still matches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from crewyard.core.events import Event

from .context import Gateway
from .errors import ApiError

_sorted = msgspec.json.Encoder(order="sorted")


def body_hash(body: Any) -> str:
    """The hash a key's repeat is matched by: of the JSON body as the client sent it."""
    return hashlib.sha256(_sorted.encode(body)).hexdigest()


def same_request(stored_hash: str | None, request_hash: str | None, what: str = "request body") -> None:
    """422 when a key's repeat is not the request that first used it."""
    if stored_hash != request_hash:
        raise _reused(what)


async def first_event(
    g: Gateway, seq: int, kind: type[Any], request_hash: str | None, what: str = "request body"
) -> Event:
    """The event that first used a key, at ``seq`` (the sequence a duplicate append was given),
    checked to be a ``kind`` made by the same request."""
    original = (await g.store.get(seq, leader=True)).decode().event
    if not isinstance(original.data, kind):
        raise _reused(what)
    same_request(original.data.request_hash, request_hash, what)
    return original


def _reused(what: str) -> ApiError:
    return ApiError(422, "idempotency_key_reused", f"this Idempotency-Key was used with a different {what}")
