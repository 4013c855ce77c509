"""Append, load, replay and follow events on one JetStream stream.

- ``append`` sets ``Nats-Msg-Id`` to the event id (the server drops a retried duplicate) and, with
  ``expected_seq``, the aggregate-wide expected-last-sequence headers, so a write based on a stale
  view of the aggregate fails with :class:`ConcurrencyConflict`. A retry whose first attempt did
  land is recognised by reading the aggregate's last message id.
- ``append_nowait`` pipelines chatty events (logs) with ``publish_async``; ``flush`` waits for them.
- ``load`` reads one aggregate with a batch direct get (one request for up to 1,000 events). In a
  cluster any replica may answer a direct get, so it can be behind: fine for deciding a command
  (the expected-sequence header catches a stale view), never for "does it exist?". Those ask the
  stream's leader: ``last_seq_of`` and ``get(seq, leader=True)``. ``load(current=True)`` reads
  what a run must not see older than its request (its project's values; its deployment's "not
  ready"): the leader says which is the aggregate's last event, a read that ends before it is
  made again, and what a replica still lacks after half a second is read from the leader.
- Following a stream as it grows (``read_batches``, ``scan``, ``follow``) is in :mod:`._follow`.

Writes go through the core's ``encode_checked``: an event the core's decoder would refuse is
never appended (``InvalidEvent`` is raised instead). Reads meet whatever is stored: ``decode``
raises ``InvalidEvent`` for anything unusable, and ``load`` keeps such an event's place with a
stand-in (see ``crewyard.core.events.unreadable``) after setting it aside.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import Header
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from crewyard.backoff import Backoff
from crewyard.core import subjects
from crewyard.core.events import Event, InvalidEvent, Recorded, encode_checked, unreadable

from ._connection import StreamSettings
from ._errors import ConcurrencyConflict, StoreUnavailable
from ._follow import Following, _status
from ._poison import set_aside
from ._raw import RawEvent

_WRONG_LAST_SEQUENCE = 10071
#: Of a message's max_payload, what is kept for its headers (event id, expected sequence and its
#: subject filter): the rest is the most an event's bytes may be.
HEADERS_ROOM = 4096
_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
#: A batch direct get asks for at most this many bytes (the server sends the event that passes it
#: too). The server cuts a client off, its whole connection, once the answers it has not read yet
#: pass the server's max_pending (64 MiB): its own cap of a batch is about that, and a reader
#: that a busy machine kept from reading for a second was dropped as a slow consumer.
BATCH_BYTES = 8 * 1024 * 1024


class Appended(msgspec.Struct, frozen=True):
    """What the stream acknowledged: the event's sequence, and whether the server had it already
    (``duplicate``: same event id inside the de-duplication window; ``seq`` is the original's)."""

    seq: int
    duplicate: bool = False


#: How long a current load reads replicas again before it asks the leader for what they lack.
CATCH_UP_S = 0.5


class EventStore(Following):
    def __init__(
        self,
        nc: Client,
        settings: StreamSettings | None = None,
        *,
        read_timeout: float = 5.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.settings = settings or StreamSettings()
        #: Appends and consumer changes: ``request_timeout`` for each answer of the server.
        self.js = nc.jetstream(timeout=request_timeout, publish_async_max_pending=4000)
        #: Reads fail within seconds when the stream cannot answer (an outage must not hang callers).
        self.read_timeout = read_timeout
        self._reads = nc.jetstream(timeout=read_timeout)
        self.stream = self.settings.name
        self.prefix = self.settings.prefix

    def subject_of(self, event: Event) -> str:
        return subjects.subject_for(
            event.data.SCOPE,
            event.project,
            event.aggregate,
            event.aggregate_id,
            event.type,
            self.prefix,
            self.settings.platform_prefix,
        )

    def checked(self, event: Event) -> bytes:
        """The event's wire bytes (``encode_checked``), or :class:`InvalidEvent` when they are
        more than the broker takes in one message (its ``max_payload``, headers included): an
        append that NATS would refuse is refused here, naming the size, before it is tried."""
        body = encode_checked(event)
        limit = self.nc.max_payload - HEADERS_ROOM
        if limit > 0 and len(body) > limit:
            raise InvalidEvent(
                f"{event.type} event is {len(body):,} bytes, more than the {limit:,} the event store takes"
            )
        return body

    def aggregate_filter(self, project: str, aggregate: str, aggregate_id: str) -> str:
        return subjects.aggregate_filter(project, aggregate, aggregate_id, self.prefix)

    def _stream_and_aggregate(self, event: Event) -> tuple[str, str]:
        """Which stream takes ``event``, and the subject filter of its aggregate there."""
        if event.data.SCOPE == "platform":
            agg = subjects.platform_aggregate_filter(
                event.aggregate, event.aggregate_id, self.settings.platform_prefix
            )
            return self.settings.platform_name, agg
        if event.aggregate == "project":
            return self.stream, subjects.project_aggregate_filter(event.aggregate_id, self.prefix)
        return self.stream, self.aggregate_filter(event.project, event.aggregate, event.aggregate_id)

    # -- writing -----------------------------------------------------------------------------

    async def append(
        self,
        event: Event,
        *,
        expected_seq: int | None = None,
        expected_over: str | None = None,
        attempts: int = 5,
    ) -> int:
        """Store one event and return its stream sequence (in the stream its scope names).

        ``expected_seq`` is the last sequence the writer saw on its aggregate, or on the subjects
        ``expected_over`` matches when given (0: none may exist yet, e.g. "the first admin key")."""
        ack = await self.append_acked(
            event, expected_seq=expected_seq, expected_over=expected_over, attempts=attempts
        )
        return ack.seq

    async def append_acked(
        self,
        event: Event,
        *,
        expected_seq: int | None = None,
        expected_over: str | None = None,
        attempts: int = 5,
    ) -> Appended:
        """Store one event; the stream's acknowledgement (sequence, and whether it was a duplicate:
        the server had this event id already, ``seq`` is then the original's)."""
        subject = self.subject_of(event)
        body = self.checked(event)
        stream, agg = self._stream_and_aggregate(event)
        agg = expected_over or agg
        delay = 0.1
        reached = False  # whether an attempt may have reached the stream (and landed unanswered)
        for attempt in range(attempts):
            headers: dict[str, str] = {Header.MSG_ID: event.id}
            if expected_seq is not None:
                headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected_seq)
                headers[_EXPECTED_SUBJECT] = agg
            try:
                ack = await self.js.publish(subject, body, headers=headers, stream=stream)
                return Appended(int(ack.seq), bool(ack.duplicate))
            except APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise StoreUnavailable(
                        f"append rejected: {exc.description}", maybe_stored=reached
                    ) from exc
                if attempt > 0:
                    landed = await self._landed(stream, agg, event.id)
                    if landed is not None:
                        return Appended(landed)
                raise ConcurrencyConflict(
                    f"{event.aggregate} {event.aggregate_id} changed concurrently"
                ) from exc
            except (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError) as exc:
                # No responders (nats-py's publish says NoStreamResponseError): no stream had it.
                reached = reached or isinstance(exc, (TimeoutError, NatsTimeout))
                if attempt == attempts - 1:
                    raise StoreUnavailable(
                        f"event store did not answer: {exc!r}", maybe_stored=reached
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise StoreUnavailable("unreachable")

    async def _landed(self, stream: str, agg_filter: str, event_id: str) -> int | None:
        # From the leader: a replica that is behind would not have our first attempt yet.
        try:
            last = await self._reads.get_last_msg(stream, agg_filter, direct=False)
        except NotFoundError:
            return None
        except Exception as exc:
            raise StoreUnavailable(f"cannot check whether the event was stored: {exc!r}") from exc
        if last.headers and last.headers.get(Header.MSG_ID) == event_id:
            return int(last.seq or 0)
        return None

    async def append_nowait(self, event: Event) -> asyncio.Future[Any]:
        """Pipeline an event without a concurrency check (for chatty events of a single writer)."""
        body = self.checked(event)
        try:
            return await self.js.publish_async(
                self.subject_of(event),
                body,
                headers={Header.MSG_ID: event.id},
                stream=self._stream_and_aggregate(event)[0],
            )
        except Exception as exc:
            raise StoreUnavailable(f"event store did not take the event: {exc!r}") from exc

    async def flush(self, timeout: float = 10.0) -> None:
        try:
            await asyncio.wait_for(self.js.publish_async_completed(), timeout)
        except Exception as exc:
            raise StoreUnavailable(f"pending events not acknowledged: {exc!r}") from exc

    # -- reading -----------------------------------------------------------------------------

    async def load_raw(
        self, filter_subject: str, start_seq: int = 1, batch: int = 1000, *, stream: str | None = None
    ) -> list[RawEvent]:
        """Every event matching ``filter_subject`` from ``start_seq`` (batch direct get; see
        :meth:`raw_batches`)."""
        out: list[RawEvent] = []
        async for chunk in self.raw_batches(filter_subject, start_seq, batch, stream=stream):
            out.extend(chunk)
        return out

    async def raw_batches(
        self, filter_subject: str, start_seq: int = 1, batch: int = 1000, *, stream: str | None = None
    ) -> AsyncIterator[list[RawEvent]]:
        """The events matching ``filter_subject`` from ``start_seq``, a batch at a time: a reader
        that folds them holds one batch, not the whole history.

        A batch ends at ``batch`` events or past ``BATCH_BYTES``, whichever comes first: a short
        batch is not the end. The server says how many matching events it still
        had after the batch (``Nats-Num-Pending``), and the next batch is asked for until none are."""
        while True:
            pending: list[int] = []
            chunk = await self._direct_batch(
                stream or self.stream, filter_subject, start_seq, batch, pending=pending
            )
            if chunk:
                yield chunk
            more = bool(pending and pending[-1] > 0) or len(chunk) >= batch
            if not chunk or not more:
                return
            start_seq = chunk[-1].seq + 1

    async def _direct_batch(
        self,
        stream: str,
        filter_subject: str,
        start_seq: int,
        batch: int,
        *,
        last_per_subject: bool = False,
        pending: list[int] | None = None,
    ) -> list[RawEvent]:
        """One batch direct get. ``pending``: given a list, the server's last word on how many
        matching events follow the batch is appended to it (the end-of-batch status carries it, and
        so does every event: the last one's counts when the batch ends at ``batch`` events)."""
        inbox = self.nc.new_inbox()
        out: list[RawEvent] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_msg(m: Msg) -> None:
            status = _status(m)[0] or None
            left = m.headers.get("Nats-Num-Pending") if m.headers else None
            if pending is not None and left is not None and left.isdigit() and not done.done():
                pending.append(int(left))
            if status is not None:
                if not done.done():
                    if status in ("204", "404"):  # end of batch / nothing (more) to read
                        done.set_result(None)
                    else:  # 408, 503 …: the server could not answer (restarting, no leader)
                        done.set_exception(StoreUnavailable(f"read failed with status {status}"))
                return
            assert m.headers is not None
            out.append(RawEvent(int(m.headers["Nats-Sequence"]), m.headers["Nats-Subject"], m.data))
            if len(out) >= batch and not done.done():
                done.set_result(None)

        sub = await self.nc.subscribe(inbox, cb=on_msg)
        try:
            if last_per_subject:
                request = json.dumps({"multi_last": [filter_subject], "batch": batch})
            else:
                ask = {"seq": start_seq, "next_by_subj": filter_subject, "batch": batch}
                request = json.dumps(ask | {"max_bytes": BATCH_BYTES})
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", request.encode(), reply=inbox)
            # The server is answering while events keep coming: a batch of megabytes read by a
            # busy process may take longer than ``read_timeout`` in all (it failed so on 2 cores).
            seen = -1
            while seen != len(out):
                seen = len(out)
                try:
                    await asyncio.wait_for(asyncio.shield(done), self.read_timeout)
                    break
                except TimeoutError:
                    continue
            if not done.done():
                raise StoreUnavailable("event store did not answer a read")
            done.result()
        finally:
            await sub.unsubscribe()
        return out

    async def last_per_subject(self, filter_subject: str, batch: int = 256) -> list[RawEvent]:
        """The last event of every subject matching ``filter_subject``, in stream order (one batch
        direct get): e.g. an aggregate's latest event of each type, without its whole history.
        Its answer is not cut at ``BATCH_BYTES`` (it could not be continued): for aggregates with
        a few small event types (a thread's events keep their large parts in the object store)."""
        raws = await self._direct_batch(self.stream, filter_subject, 0, batch, last_per_subject=True)
        return sorted(raws, key=lambda r: r.seq)

    async def load(
        self,
        project: str,
        aggregate: str,
        aggregate_id: str,
        *,
        types: str | None = None,
        current: bool = False,
    ) -> list[Recorded]:
        """One aggregate's events (a project's own from both of its scopes, in order). ``types``:
        only those whose type matches it, e.g. ``run.*``: a run's lifecycle without what its crew
        emitted (which may be tens of thousands of events: read-only checks want ``rs.fold`` of
        the lifecycle; an append's expected sequence is the aggregate's last event of any type).
        ``current``: every event the stream had when the call was made, whichever replica answers
        (one more request, to the stream's leader; and one per event a replica that stays behind
        lacks)."""
        if aggregate == "project":
            filt = subjects.project_aggregate_filter(aggregate_id, self.prefix)
        else:
            filt = subjects.aggregate_filter(project, aggregate, aggregate_id, self.prefix, types or ">")
        raws = await (self.load_raw_current(filt) if current else self.load_raw(filt))
        return [self._history_entry(r, project, aggregate, aggregate_id) for r in raws]

    async def load_raw_current(self, filt: str) -> list[RawEvent]:
        """Every event matching ``filt`` the stream had when the call was made (see ``load``)."""
        last = await self.last_seq_of(filt) or 0
        turns = Backoff(min(self.read_timeout, CATCH_UP_S), first=0.01, most=0.1)
        while True:
            raws = await self.load_raw(filt)
            if (raws[-1].seq if raws else 0) >= last:
                return raws
            if turns.expired:  # a replica that stays behind: the rest from the leader itself
                return raws + await self._tail_from_leader(filt, raws[-1].seq if raws else 0, last)
            await turns.pause()

    async def _tail_from_leader(self, filt: str, after: int, last: int) -> list[RawEvent]:
        """The events of ``filt`` after ``after`` up to ``last``, one request each to the stream's
        leader (what a replica behind it did not have yet: a few events, as a rule)."""
        out: list[RawEvent] = []
        seq = after + 1
        while seq <= last:
            try:
                msg = await self._reads.get_msg(self.stream, seq, subject=filt, next=True, direct=False)
            except Exception as exc:
                raise StoreUnavailable(f"cannot read {filt} from the stream's leader: {exc!r}") from exc
            out.append(RawEvent(int(msg.seq or seq), str(msg.subject), bytes(msg.data or b"")))
            seq = out[-1].seq + 1
        return out

    async def load_platform(self, aggregate: str, aggregate_id: str) -> list[Recorded]:
        """One aggregate of the platform stream (an API key, a consumer)."""
        platform = self.settings.platform_prefix
        filt = subjects.platform_aggregate_filter(aggregate, aggregate_id, platform)
        raws = await self.load_raw(filt, stream=self.settings.platform_name)
        return [
            self._history_entry(r, subjects.PLATFORM_SCOPE, aggregate, aggregate_id, platform) for r in raws
        ]

    async def load_any(
        self, aggregate: str, aggregate_id: str, *, types: str | None = None
    ) -> list[Recorded]:
        """Load an aggregate whose project is unknown (ids are unique across projects); ``types``
        as for :meth:`load`."""
        filt = subjects.any_project_aggregate_filter(aggregate, aggregate_id, self.prefix, types or ">")
        raws = await self.load_raw(filt)
        return [self._history_entry(r, "", aggregate, aggregate_id) for r in raws]

    def _history_entry(
        self, raw: RawEvent, project: str, aggregate: str, aggregate_id: str, prefix: str | None = None
    ) -> Recorded:
        try:
            return raw.decode(prefix or self.prefix)
        except InvalidEvent as exc:
            set_aside("load", raw.seq, raw.subject, exc)
            return unreadable(raw.seq, project, aggregate, aggregate_id, str(exc))

    async def get(self, seq: int, *, leader: bool = False) -> RawEvent:
        """The event at one stream sequence; ``leader``: asked of the stream's leader, which has
        every acknowledged event (any replica may answer otherwise, and may not have it yet)."""
        try:
            msg = await self._reads.get_msg(self.stream, seq, direct=not leader)
        except NotFoundError as exc:
            raise StoreUnavailable(f"no event at sequence {seq}") from exc
        except Exception as exc:
            raise StoreUnavailable(f"cannot read sequence {seq}: {exc!r}") from exc
        return RawEvent(int(msg.seq or seq), str(msg.subject), bytes(msg.data or b""))

    async def last_seq_of(self, filter_subject: str, *, stream: str | None = None) -> int | None:
        """The sequence of the newest event matching ``filter_subject`` (None: there is none),
        from the stream's leader: the authority on whether something exists. ``stream``: another
        stream than the events' (the platform stream)."""
        try:
            msg = await self._reads.get_last_msg(stream or self.stream, filter_subject, direct=False)
        except NotFoundError:
            return None
        except Exception as exc:
            raise StoreUnavailable(f"cannot read the stream: {exc!r}") from exc
        return int(msg.seq or 0)

    async def last_seq(self) -> int:
        try:
            info = await self._reads.stream_info(self.stream)
        except Exception as exc:
            raise StoreUnavailable(f"cannot read stream state: {exc!r}") from exc
        return int(info.state.last_seq)
