"""Following a server-sent event stream without losing or repeating an event.

The gateway sets ``id:`` to the stream sequence, so after a dropped connection the follower
reconnects with ``Last-Event-ID`` and the server replays exactly what came after. The follower
also drops any message whose numeric id it has already seen, in case a server replays inclusively.
A server that is shutting down ends the stream with a ``retry:`` hint; the follower waits that
long and reconnects (through a load balancer, to another gateway).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from contextlib import aclosing, closing
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from crewyard.contract.events import StreamEvent

from ._errors import ApiError, ClientError, api_error
from ._transport import RETRYABLE, RETRYABLE_STATUS, AsyncTransport, Transport

#: A quiet stream is not a dead one: the gateway sends keep-alive comments well within this.
READ_TIMEOUT_S = 60.0
_event = msgspec.json.Decoder(StreamEvent)


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    #: The ``id:`` given in this message's own block (None when it set none).
    id: str | None = None

    def decode(self) -> StreamEvent:
        """The message's data as the stored event it carries."""
        try:
            return _event.decode(self.data)
        except msgspec.DecodeError as exc:
            raise ClientError(f"the event stream sent an event this client cannot read: {exc}") from None


class SseParser:
    """Incremental parser for the ``text/event-stream`` format, fed one line at a time."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, line: str) -> SseMessage | None:
        if line == "":
            data, event, msg_id = self._data, self._event, self._id
            self._data, self._event, self._id = [], "", None
            if not data:  # a block with no data dispatches nothing (e.g. a lone keep-alive id)
                return None
            return SseMessage(event=event or "message", data="\n".join(data), id=msg_id)
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isascii() and value.isdigit() and len(value) <= 30:
            self.retry_ms = int(value)
        return None


class SseLines:
    """A stream's text cut into lines where the format cuts them: at CR, LF or CRLF and nowhere
    else. ``str.splitlines`` (httpx's ``iter_lines``) also cuts at U+2028, U+0085 and others,
    which a JSON string in an event's data may hold as they are."""

    def __init__(self) -> None:
        self._rest = ""
        self._after_cr = False  # the last piece ended with CR: an LF first in the next is its pair

    def feed(self, text: str) -> list[str]:
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        if not text:
            return []
        lines = _BREAK.split(self._rest + text)
        self._rest = lines.pop()
        return lines


_BREAK = re.compile(r"\r\n|\r|\n")


class _Unavailable(Exception):
    """A 502/503/504 answer: the gateway is there but cannot serve the stream right now."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def _seq(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class _Follower:
    """What both followers share: the resume point, the retry budget and the backoff."""

    transport: Transport | AsyncTransport

    def __init__(
        self,
        path: str,
        *,
        last_event_id: str | None,
        params: Mapping[str, Any] | None,
        max_retries: int,
        backoff_s: float,
    ) -> None:
        self.path = path
        self.last_id = last_event_id
        self.params = dict(params or {})
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._last_seq = _seq(last_event_id)
        #: Whether the server ever answered 200: before that a failure means "not there", not "dropped".
        self._connected = False

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id is not None:
            headers["Last-Event-ID"] = self.last_id
        return headers

    def accept(self, msg: SseMessage) -> bool:
        """Whether to pass ``msg`` on (False: already shown before a reconnect); moves the resume point."""
        seq = _seq(msg.id)
        if seq is not None and self._last_seq is not None and seq <= self._last_seq:
            return False
        if msg.id is not None:
            self.last_id = msg.id
            self._last_seq = seq if seq is not None else self._last_seq
        return True

    def delay(self, failures: int, parser: SseParser) -> float:
        delay = self.backoff_s * float(2 ** (failures - 1))
        if parser.retry_ms is not None:
            delay = max(delay, parser.retry_ms / 1000)
        return min(delay, 5.0)

    def failed(self, exc: Exception) -> Exception | None:
        """What a failed connection means: None to ask again at once, else the failure to count
        against the retry budget; raised when trying again is no use."""
        if isinstance(exc, httpx.ReadTimeout):
            # The server answered and went quiet: asking again costs nothing.
            return None if self._connected else exc
        if isinstance(exc, _Unavailable):
            if not self._connected:
                raise exc.error from None
            return exc.error
        if isinstance(exc, RETRYABLE):
            # Nobody listening before the stream ever opened: the server is not there, say so now.
            # Anything else (a stale kept-alive connection, a drop) is worth another try.
            if not self._connected and isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                raise self.transport.error(exc) from None
            return exc
        raise self.transport.error(exc) from None

    def give_up_after(self, failures: int, error: Exception) -> None:
        """Raise ``error`` once ``failures`` in a row are more than the retry budget."""
        if failures > self.max_retries:
            if isinstance(error, ClientError):
                raise error
            raise self.transport.error(error)

    def checked(self, resp: httpx.Response) -> None:
        if resp.status_code in RETRYABLE_STATUS:
            raise _Unavailable(api_error(resp))
        if resp.status_code >= 400:
            raise api_error(resp)
        self._connected = True


class EventStream(_Follower):
    """Iterate over an SSE endpoint, reconnecting with ``Last-Event-ID`` after a drop.

    ``on_eof`` is asked when the server ends the stream cleanly: True means "this is the real
    end" (e.g. the run is over); otherwise the follower reconnects. A first connection that
    fails is an error at once (the server is not there); later failures are retried up to
    ``max_retries`` times in a row before giving up.
    """

    transport: Transport

    def __init__(
        self,
        transport: Transport,
        path: str,
        *,
        last_event_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        on_eof: Callable[[], bool] | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.25,
    ) -> None:
        super().__init__(
            path, last_event_id=last_event_id, params=params, max_retries=max_retries, backoff_s=backoff_s
        )
        self.transport = transport
        self.on_eof = on_eof

    def __iter__(self) -> Iterator[SseMessage]:
        return self.messages()

    def messages(self) -> Generator[SseMessage, None, None]:
        """The messages; close() the generator to let go of the connection early."""
        failures = 0
        while True:
            parser = SseParser()
            received = 0
            try:
                # closing(): when the caller stops early, the HTTP response is released at once.
                with closing(self._connect(parser)) as messages:
                    for msg in messages:
                        received += 1
                        failures = 0
                        yield msg
                if self.on_eof is not None and self.on_eof():
                    return
                if received:
                    continue  # a clean end after progress: just pick up where we are
                error: Exception = ClientError(
                    f"the event stream {self.path} keeps closing without new events"
                )
            except (httpx.HTTPError, httpx.InvalidURL, _Unavailable) as exc:
                failed = self.failed(exc)
                if failed is None:
                    continue
                error = failed
            failures += 1
            self.give_up_after(failures, error)
            time.sleep(self.delay(failures, parser))

    def _connect(self, parser: SseParser) -> Generator[SseMessage, None, None]:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
        with self.transport.http.stream(
            "GET", self.path, params=self.params, headers=self.headers(), timeout=timeout
        ) as resp:
            if resp.status_code >= 400:
                resp.read()
            self.checked(resp)
            lines = SseLines()
            for text in resp.iter_text():
                for line in lines.feed(text):
                    msg = parser.feed(line)
                    if msg is not None and self.accept(msg):
                        yield msg


class AsyncEventStream(_Follower):
    """The asynchronous twin of :class:`EventStream` (``async for msg in stream``)."""

    transport: AsyncTransport

    def __init__(
        self,
        transport: AsyncTransport,
        path: str,
        *,
        last_event_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        on_eof: Callable[[], Awaitable[bool]] | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.25,
    ) -> None:
        super().__init__(
            path, last_event_id=last_event_id, params=params, max_retries=max_retries, backoff_s=backoff_s
        )
        self.transport = transport
        self.on_eof = on_eof

    def __aiter__(self) -> AsyncIterator[SseMessage]:
        return self.messages()

    async def messages(self) -> AsyncGenerator[SseMessage, None]:
        failures = 0
        while True:
            parser = SseParser()
            received = 0
            try:
                async with aclosing(self._connect(parser)) as messages:
                    async for msg in messages:
                        received += 1
                        failures = 0
                        yield msg
                if self.on_eof is not None and await self.on_eof():
                    return
                if received:
                    continue
                error: Exception = ClientError(
                    f"the event stream {self.path} keeps closing without new events"
                )
            except (httpx.HTTPError, httpx.InvalidURL, _Unavailable) as exc:
                failed = self.failed(exc)
                if failed is None:
                    continue
                error = failed
            failures += 1
            self.give_up_after(failures, error)
            await asyncio.sleep(self.delay(failures, parser))

    async def _connect(self, parser: SseParser) -> AsyncGenerator[SseMessage, None]:
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
        async with self.transport.http.stream(
            "GET", self.path, params=self.params, headers=self.headers(), timeout=timeout
        ) as resp:
            if resp.status_code >= 400:
                await resp.aread()
            self.checked(resp)
            lines = SseLines()
            async for text in resp.aiter_text():
                for line in lines.feed(text):
                    msg = parser.feed(line)
                    if msg is not None and self.accept(msg):
                        yield msg
