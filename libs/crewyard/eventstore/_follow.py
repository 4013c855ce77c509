"""Reading a stream as it grows: batches for a reader that must not fall behind, a fast scan for a
full replay, and an ordered consumer that follows a subject live.

- ``read_batches`` pulls (never push): a reader that falls behind never makes the client drop
  messages, and the ephemeral consumer is made again after a broker restart. Its consumer
  acknowledges nothing, so a batch lost on the way (a connection cut while it was sent) is
  never sent again: each message's consumer sequence must follow the last one's, and at a gap
  the consumer is made again after the last event read (the way ordered consumers do). Each
  pull asks for at most ``PULL_BYTES`` and one largest message (:class:`_Pull`): the server cuts
  off a client whose unread messages pass its max_pending (64 MiB), and a pull of 2,000 events
  of megabytes did that to a busy reader, its whole connection dropped.
- ``scan`` is a push consumer whose callback only reads subjects (most events are skipped without
  decoding); a stall (messages dropped) is noticed and the scan resumes after the last event seen.
- ``follow`` is an ordered consumer from a sequence into a queue: history first, then live, no gaps.

:class:`EventStore` has these as methods; they need only its JetStream context and stream name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ._errors import StoreUnavailable
from ._raw import RawEvent

#: The bytes of events a scan keeps for its caller before it lets later ones go (see ``scan``).
KEPT_BYTES = 64 << 20
#: What one pull of ``read_batches`` asks for at most, besides room for one largest message.
PULL_BYTES = 8 << 20


#: The 409 statuses that end a pull normally (others: the consumer was deleted, too many pulls).
_PULL_ENDS = frozenset({"Message Size Exceeds MaxBytes", "Batch Completed"})


class _Pull:
    """An ephemeral pull consumer whose pulls of what is there are bounded in bytes as well as in
    messages (the client's ``fetch`` bounds only messages). A message larger than a pull's
    ``max_bytes`` would never be sent, so each pull has room for one of the largest the server
    takes, and the pull that waits for news asks for one message, with no byte bound.

    Each pull has a reply subject of its own: an end status that comes late (a pull ended by its
    count still gets "409 Batch Completed") is told from the current pull's. Messages that come
    after their pull was given up are kept for the next ``fetch``: they are the consumer's next
    ones, in order (the caller checks consumer sequences, as ever)."""

    def __init__(self, js: JetStreamContext, nc: Client, stream: str, name: str) -> None:
        self.js, self.nc, self.stream, self.name = js, nc, stream, name
        self.max_bytes = PULL_BYTES + nc.max_payload + 4096  # and its subject
        self._inbox = nc.new_inbox()
        self._pulls = 0
        self._got: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Any = None

    async def start(self) -> None:
        async def put(m: Msg) -> None:
            self._got.put_nowait(m)

        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=put)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages of what the stream has now, fewer once the next would pass
        ``max_bytes``; if it has none, the first that comes within ``timeout`` (else
        ``TimeoutError``). ``StoreUnavailable`` when the consumer is gone or the server refuses."""
        late = []
        while not self._got.empty():
            m = self._got.get_nowait()
            if not _status(m)[0]:
                late.append(m)
        if late:
            return late
        out = await self._pull({"batch": batch, "no_wait": True, "max_bytes": self.max_bytes}, batch, timeout)
        if not out:
            out = await self._pull({"batch": 1, "expires": int(timeout * 1e9)}, 1, timeout)
        if not out:
            raise TimeoutError
        return out

    async def _pull(self, request: dict[str, Any], batch: int, timeout: float) -> list[Msg]:
        self._pulls += 1
        reply = f"{self._inbox}.{self._pulls}"
        await self.nc.publish(
            f"{self.js._prefix}.CONSUMER.MSG.NEXT.{self.stream}.{self.name}",
            json.dumps(request).encode(),
            reply=reply,
        )
        out: list[Msg] = []
        while len(out) < batch:
            if not self._got.empty():  # a burst's messages come together: no timer for each
                m = self._got.get_nowait()
            else:
                try:
                    m = await asyncio.wait_for(self._got.get(), timeout + 1.0)
                except TimeoutError:
                    break  # the server's own end of the pull never came (a broker away)
            status, description = _status(m)
            if not status:
                out.append(m)
            elif m.subject != reply or status == "100":
                continue  # an earlier pull's end; a heartbeat
            elif status in ("404", "408") or description in _PULL_ENDS:
                break  # nothing (more) now; expired; the next would pass max_bytes
            else:
                raise StoreUnavailable(f"pull failed with status {status} {description}")
        return out

    async def consumer_info(self) -> Any:
        return await self.js.consumer_info(self.stream, self.name)

    async def unsubscribe(self) -> None:
        """Stops reading and asks for the consumer's deletion without waiting for the answer (a
        broker away would hold the caller for a timeout; the consumer goes by itself after
        ``inactive_threshold`` anyway)."""
        await self._sub.unsubscribe()
        await self.nc.publish(
            f"{self.js._prefix}.CONSUMER.DELETE.{self.stream}.{self.name}", reply=self.nc.new_inbox()
        )


def _status(m: Msg) -> tuple[str, str]:
    """A JetStream status message's code and description; ``("", "")`` for a message."""
    if not m.headers or "Status" not in m.headers:
        return "", ""
    return str(m.headers["Status"]), str(m.headers.get("Description", ""))


class Following:
    """The streaming reads of :class:`EventStore` (a base class of it)."""

    js: JetStreamContext
    nc: Client
    stream: str

    async def read_batches(
        self,
        filter_subject: str,
        *,
        start_seq: int = 1,
        batch: int | Callable[[], int] = 1000,
        idle_s: float = 1.0,
    ) -> AsyncGenerator[list[RawEvent], None]:
        """Read from ``start_seq`` on, in batches of at most ``batch`` events (or what it answers
        before each read), as fast as the caller takes them (pull, not push: a consumer that falls
        behind never makes the client drop messages, and nothing is read ahead of the caller).
        Yields an empty list after ``idle_s`` without news, so callers can check whether to stop.
        Survives broker restarts: the ephemeral consumer is made again from the last sequence read."""
        next_seq = start_seq
        psub: Any = None
        delivered = 0  # the consumer sequence of the last message read from ``psub``
        try:
            while True:
                if psub is None:
                    delivered = 0
                    psub = await self._pull_consumer(filter_subject, next_seq)
                    if psub is None:
                        await asyncio.sleep(idle_s)
                        yield []
                        continue
                try:
                    msgs = await psub.fetch(batch() if callable(batch) else batch, timeout=idle_s)
                except (TimeoutError, NatsTimeout):
                    if not await self._consumer_healthy(psub, delivered):
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
                    await asyncio.sleep(min(idle_s, 0.2))  # a refused pull: never a tight loop
                    continue
                out = []
                for m in msgs:
                    sequence = m.metadata.sequence
                    if sequence.consumer != delivered + 1:
                        # Messages sent and lost on the way: read again after the last one read.
                        with contextlib.suppress(Exception):
                            await psub.unsubscribe()
                        psub = None
                        break
                    delivered = sequence.consumer
                    if sequence.stream >= next_seq:
                        out.append(RawEvent(sequence.stream, m.subject, m.data))
                if out:
                    next_seq = out[-1].seq + 1
                yield out
        finally:
            if psub is not None:
                with contextlib.suppress(Exception):
                    await psub.unsubscribe()

    @staticmethod
    async def _consumer_healthy(psub: Any, delivered: int) -> bool:
        """An idle fetch is fine only if the consumer still exists, has nothing pending and sent
        nothing past what was read (a message sent and lost is never sent again)."""
        try:
            info = await psub.consumer_info()
        except Exception:
            return False
        sent = info.delivered.consumer_seq if info.delivered else 0
        return int(info.num_pending or 0) == 0 and sent == delivered

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
        after the last event it saw. The events kept for the caller are bounded too (a replay
        slower than the server held the whole stream in memory): past ``4 * batch`` of them or
        ``KEPT_BYTES``, later ones are let go unseen and read again after the caller's batch."""
        pos = start_seq - 1
        while pos < until_seq:
            kept: list[RawEvent] = []
            seen, held, full = pos, 0, False
            wake = asyncio.Event()

            async def on_msg(m: Msg, kept: list[RawEvent] = kept, wake: asyncio.Event = wake) -> None:
                nonlocal seen, held, full
                if not full and (len(kept) >= 4 * batch or held >= KEPT_BYTES):
                    full = True
                    wake.set()  # the subscription ends before the caller gets what is kept
                if full:
                    return  # not seen, from here on: read again once the caller took what is kept
                tokens = m.reply.split(".")
                seq = int(tokens[5] if len(tokens) == 9 else tokens[7])
                if seq <= seen:
                    return
                seen = seq
                if want(m.subject):
                    kept.append(RawEvent(seq, m.subject, m.data))
                    held += len(m.data)
                if len(kept) >= batch or held >= KEPT_BYTES or seq >= until_seq:
                    wake.set()

            sub = await self._ordered(filter_subject, pos + 1, on_msg, pending_msgs_limit=2_000_000)
            try:
                while pos < until_seq:
                    before = seen
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(wake.wait(), stall_s)
                    wake.clear()
                    if full:  # nothing more is sent while the caller works on what is kept
                        with contextlib.suppress(Exception):
                            await sub.unsubscribe()
                    out, kept[:], held = list(kept), [], 0
                    pos = seen
                    if out:
                        yield out
                    if (seen == before or full) and pos < until_seq:
                        break  # no progress, or some let go: start again after the last event seen
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

    async def _pull_consumer(self, filter_subject: str, start_seq: int) -> _Pull | None:
        config = ConsumerConfig(
            filter_subject=filter_subject,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=1,
        )
        try:
            info = await self.js.add_consumer(self.stream, config)
            pull = _Pull(self.js, self.nc, self.stream, info.name)
            await pull.start()
        except Exception:
            return None  # broker away: the caller waits and asks again
        return pull

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
