"""Append, load, replay and follow events on one JetStream stream.

- ``append`` sets ``Nats-Msg-Id`` to the event id (the server drops a retried duplicate) and, with
  ``expected_seq``, the aggregate-wide expected-last-sequence headers, so a write based on a stale
  view of the aggregate fails with :class:`ConcurrencyConflict`. A retry whose first attempt did
  land is recognised by reading the aggregate's last message id.
- ``append_nowait`` pipelines chatty events (logs) with ``publish_async``; ``flush`` waits for them.
- ``load`` reads one aggregate with a batch direct get (one request for up to 1,000 events). In a
  cluster any replica may answer a direct get, so it can be behind: fine for deciding a command
  (the expected-sequence header catches a stale view), never for "does it exist?". Those ask the
  stream's leader: ``last_seq_of`` and ``get(seq, leader=True)``.
- ``follow`` is an ordered consumer from a sequence: history first, then live, no gaps.

Writes go through the core's ``encode_checked``: an event the core's decoder would refuse is
never appended (``InvalidEvent`` is raised instead). Reads meet whatever is stored: ``decode``
raises ``InvalidEvent`` for anything unusable, and ``load`` keeps such an event's place with a
stand-in (see ``crewyard.core.events.unreadable``) after setting it aside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, Header
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError

from crewyard.core import subjects
from crewyard.core.events import Event, InvalidEvent, Recorded, decode, encode_checked, unreadable

from ._connection import StreamSettings
from ._errors import ConcurrencyConflict, StoreUnavailable
from ._poison import set_aside

_WRONG_LAST_SEQUENCE = 10071
_EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


class RawEvent(msgspec.Struct, frozen=True):
    """An event as stored: its sequence, subject and JSON bytes (decode lazily)."""

    seq: int
    subject: str
    data: bytes

    def decode(self, prefix: str | None = None) -> Recorded:
        """The event, checked against its subject; :class:`InvalidEvent` when it is unusable.

        ``prefix`` is the stream's subject prefix; without it only the part of the subject after
        the prefix is compared."""
        event = decode(self.data)
        places = subjects.places_of(
            event.data.SCOPE, event.project, event.aggregate, event.aggregate_id, event.type
        )
        if prefix is not None:
            ok = any(self.subject == f"{prefix}.{place}" for place in places)
        else:
            ok = any(self.subject.endswith("." + place) for place in places)
        if not ok:
            raise InvalidEvent(f"subject {self.subject[:200]!r} does not match the event ({places[0]})")
        return Recorded(self.seq, event)


class Appended(msgspec.Struct, frozen=True):
    """What the stream acknowledged: the event's sequence, and whether the server had it already
    (``duplicate``: same event id inside the de-duplication window; ``seq`` is the original's)."""

    seq: int
    duplicate: bool = False


class EventStore:
    def __init__(
        self, nc: Client, settings: StreamSettings | None = None, *, read_timeout: float = 5.0
    ) -> None:
        self.nc = nc
        self.settings = settings or StreamSettings()
        self.js = nc.jetstream(timeout=5.0, publish_async_max_pending=4000)
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
        body = encode_checked(event)
        stream, agg = self._stream_and_aggregate(event)
        agg = expected_over or agg
        delay = 0.1
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
                    raise StoreUnavailable(f"append rejected: {exc.description}") from exc
                if attempt > 0:
                    landed = await self._landed(stream, agg, event.id)
                    if landed is not None:
                        return Appended(landed)
                raise ConcurrencyConflict(
                    f"{event.aggregate} {event.aggregate_id} changed concurrently"
                ) from exc
            except (TimeoutError, NatsTimeout, NoRespondersError, NoStreamResponseError) as exc:
                if attempt == attempts - 1:
                    raise StoreUnavailable(f"event store did not answer: {exc!r}") from exc
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
        body = encode_checked(event)
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
        """Every event matching ``filter_subject`` from ``start_seq`` (batch direct get)."""
        out: list[RawEvent] = []
        while True:
            chunk = await self._direct_batch(stream or self.stream, filter_subject, start_seq, batch)
            out.extend(chunk)
            if len(chunk) < batch:
                return out
            start_seq = chunk[-1].seq + 1

    async def _direct_batch(
        self, stream: str, filter_subject: str, start_seq: int, batch: int, *, last_per_subject: bool = False
    ) -> list[RawEvent]:
        inbox = self.nc.new_inbox()
        out: list[RawEvent] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_msg(m: Msg) -> None:
            status = m.headers.get("Status") if m.headers else None
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
                request = json.dumps({"seq": start_seq, "next_by_subj": filter_subject, "batch": batch})
            await self.nc.publish(f"$JS.API.DIRECT.GET.{stream}", request.encode(), reply=inbox)
            await asyncio.wait_for(done, self.read_timeout)
        except TimeoutError as exc:
            raise StoreUnavailable("event store did not answer a read") from exc
        finally:
            await sub.unsubscribe()
        return out

    async def last_per_subject(self, filter_subject: str, batch: int = 256) -> list[RawEvent]:
        """The last event of every subject matching ``filter_subject``, in stream order (one batch
        direct get): e.g. an aggregate's latest event of each type, without its whole history."""
        raws = await self._direct_batch(self.stream, filter_subject, 0, batch, last_per_subject=True)
        return sorted(raws, key=lambda r: r.seq)

    async def load(self, project: str, aggregate: str, aggregate_id: str) -> list[Recorded]:
        """One aggregate's events (a project's own from both of its scopes, in order)."""
        if aggregate == "project":
            filt = subjects.project_aggregate_filter(aggregate_id, self.prefix)
        else:
            filt = self.aggregate_filter(project, aggregate, aggregate_id)
        raws = await self.load_raw(filt)
        return [self._history_entry(r, project, aggregate, aggregate_id) for r in raws]

    async def load_platform(self, aggregate: str, aggregate_id: str) -> list[Recorded]:
        """One aggregate of the platform stream (an API key, a consumer)."""
        platform = self.settings.platform_prefix
        filt = subjects.platform_aggregate_filter(aggregate, aggregate_id, platform)
        raws = await self.load_raw(filt, stream=self.settings.platform_name)
        return [
            self._history_entry(r, subjects.PLATFORM_SCOPE, aggregate, aggregate_id, platform) for r in raws
        ]

    async def load_any(self, aggregate: str, aggregate_id: str) -> list[Recorded]:
        """Load an aggregate whose project is unknown (ids are unique across projects)."""
        raws = await self.load_raw(
            subjects.any_project_aggregate_filter(aggregate, aggregate_id, self.prefix)
        )
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

    async def last_seq_of(self, filter_subject: str) -> int | None:
        """The sequence of the newest event matching ``filter_subject`` (None: there is none),
        from the stream's leader: the authority on whether something exists."""
        try:
            msg = await self._reads.get_last_msg(self.stream, filter_subject, direct=False)
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

    async def read_batches(
        self, filter_subject: str, *, start_seq: int = 1, batch: int = 1000, idle_s: float = 1.0
    ) -> AsyncGenerator[list[RawEvent], None]:
        """Read from ``start_seq`` on, in batches, as fast as the caller takes them (pull, not push:
        a consumer that falls behind never makes the client drop messages). Yields an empty list
        after ``idle_s`` without news, so callers can check whether to stop. Survives broker
        restarts: the ephemeral consumer is made again from the last sequence read."""
        next_seq = start_seq
        psub: Any = None
        try:
            while True:
                if psub is None:
                    psub = await self._pull_consumer(filter_subject, next_seq)
                    if psub is None:
                        await asyncio.sleep(idle_s)
                        yield []
                        continue
                try:
                    msgs = await psub.fetch(batch, timeout=idle_s)
                except (TimeoutError, NatsTimeout):
                    if not await self._consumer_healthy(psub):
                        # Gone with a broker restart (or stuck): make it again from where we are.
                        with contextlib.suppress(Exception):
                            await psub.unsubscribe()
                        psub = None
                    yield []
                    continue
                except Exception:
                    with contextlib.suppress(Exception):
                        await psub.unsubscribe()
                    psub = None
                    continue
                out = [RawEvent(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
                out = [r for r in out if r.seq >= next_seq]
                if out:
                    next_seq = out[-1].seq + 1
                yield out
        finally:
            if psub is not None:
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()

    @staticmethod
    async def _consumer_healthy(psub: Any) -> bool:
        """An idle fetch is fine only if the consumer still exists and has nothing pending."""
        try:
            info = await psub.consumer_info()
        except Exception:
            return False
        return int(info.num_pending or 0) == 0

    async def scan(
        self,
        filter_subject: str,
        *,
        start_seq: int,
        until_seq: int,
        want: Callable[[str], bool],
        batch: int = 2000,
        stall_s: float = 5.0,
    ) -> AsyncGenerator[list[RawEvent], None]:
        """Every event from ``start_seq`` to ``until_seq`` whose subject ``want`` keeps, in order and
        in batches — the fast path for a full replay. The push consumer's callback only looks at
        subjects (most events are skipped without decoding), so it keeps up with the server; if
        it ever falls behind and messages are dropped, the stall is noticed and the scan resumes
        after the last event it saw."""
        pos = start_seq - 1
        while pos < until_seq:
            kept: list[RawEvent] = []
            seen = pos
            wake = asyncio.Event()

            async def on_msg(m: Msg, kept: list[RawEvent] = kept, wake: asyncio.Event = wake) -> None:
                nonlocal seen
                tokens = m.reply.split(".")
                seq = int(tokens[5] if len(tokens) == 9 else tokens[7])
                if seq <= seen:
                    return
                seen = seq
                if want(m.subject):
                    kept.append(RawEvent(seq, m.subject, m.data))
                if len(kept) >= batch or seq >= until_seq:
                    wake.set()

            sub = await self._ordered(filter_subject, pos + 1, on_msg, pending_msgs_limit=2_000_000)
            try:
                while pos < until_seq:
                    before = seen
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), stall_s)
                    wake.clear()
                    out, kept[:] = list(kept), []
                    pos = seen
                    if out:
                        yield out
                    if seen == before and pos < until_seq:
                        break  # no progress: start again after the last event seen
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _ordered(
        self, filter_subject: str, start_seq: int, cb: Callable[[Msg], Awaitable[None]], **options: Any
    ) -> Any:
        """An ordered push consumer from ``start_seq`` calling ``cb`` for each event."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(start_seq, 1)
        )
        try:
            return await self.js.subscribe(
                filter_subject, stream=self.stream, ordered_consumer=True, cb=cb, config=config, **options
            )
        except Exception as exc:
            raise StoreUnavailable(f"cannot read {filter_subject}: {exc!r}") from exc

    async def _pull_consumer(self, filter_subject: str, start_seq: int) -> Any:
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=1,
        )
        try:
            return await self.js.pull_subscribe(
                filter_subject, durable=None, stream=self.stream, config=config
            )
        except Exception:
            return None  # broker away: the caller waits and asks again

    @contextlib.asynccontextmanager
    async def follow(
        self, filter_subject: str, *, start_seq: int = 1, queue_size: int = 10_000
    ) -> AsyncIterator[asyncio.Queue[RawEvent]]:
        """An ordered consumer from ``start_seq`` into a queue: history, then live events."""
        queue: asyncio.Queue[RawEvent] = asyncio.Queue(maxsize=queue_size)

        async def on_msg(m: Msg) -> None:
            await queue.put(RawEvent(m.metadata.sequence.stream, m.subject, m.data))

        sub = await self._ordered(filter_subject, start_seq, on_msg, idle_heartbeat=2.0)
        try:
            yield queue
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
