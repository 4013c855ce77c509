"""Limits on an HTTP connection, below the app: what it may cost before and around a request.

uvicorn's httptools protocol keeps a connection that never finishes a request's head for ever,
buffers a head of any size, waits for a body or for a client to take its answer as long as they
like, queues any number of requests sent ahead of their answers, and lets one address open as
many connections as it likes. Each costs a file descriptor and memory, mostly before anyone is
authenticated, so one host could hold a server's descriptors or memory (slowloris) without ever
sending a key. :class:`LimitedHttp` is that protocol with these limits, used by the API and by
every service's health listener:

- **head timeout**: a request's head (request line and headers) must be complete within
  ``head_timeout_s`` of the connection being made or of its first byte (the next request of a
  keep-alive connection; an idle one is closed by uvicorn's keep-alive timeout): 408. Bytes that
  arrive while no request is under way (CRLFs, trailers after an answer) get as long;
- **body pace**: a body keeps arriving at ``min_body_rate`` bytes a second over each such
  period, unless the app is the one not reading it (reading paused), whether or not the request
  was answered already (an early 401 or 413 still reaches a client that sends its whole body
  first); else the connection is closed;
- **head size**: at most :data:`MAX_HEAD_BYTES` (64 KiB, counted exactly once the head is
  parsed; a head that never ends is cut once what arrived of it passes that, give or take one
  read). Trailers after a chunked body count the same and are never kept: 431;
- **requests ahead of their answers**: at most :data:`MAX_PIPELINED` wait on a connection
  (reading stops while any wait); past that it is closed;
- **answers not taken**: a client that takes nothing of a response for ``write_stall_s`` (60 s)
  is disconnected (a stream's client resumes with ``Last-Event-ID``);
- **connections per address**: one client address (an IPv6 client's /64) holds at most
  ``per_address`` connections at a time (0: no limit): 503, and the connection is closed.
  A reverse proxy's connections are not counted (it limits its own clients): loopback's, and
  those of the proxies trusted for ``X-Forwarded-For`` (``FORWARDED_ALLOW_IPS``).

Nothing here speaks WebSocket: a request asking for an upgrade is answered as HTTP and ends its
connection (handed to uvicorn's WebSocket protocol, a connection's end was never seen here, and
its address kept the count for good). Refusals of a head, and uvicorn's own 400 for a request
that is not HTTP, are answered in the API's error shape (``{"error": {"code", "message"}}``),
then the connection is half-closed and what the client still sends is dropped for
:data:`LINGER_S` (closed at once, the kernel reset it and a client still sending lost the answer);
a request past its head has its answer (or is having it written), so its connection is only
closed.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from crewyard.counts import adjust

#: The largest request head: request line and headers (nginx takes 32 KiB, Node 16 KiB).
MAX_HEAD_BYTES = 64 * 1024
#: Requests one connection may send ahead of their answers (HTTP/1.1 pipelining).
MAX_PIPELINED = 32
#: After a refusal is written, how long what the client still sends is read and dropped before
#: the connection closes: closed at once with its bytes unread, the kernel resets it, and a
#: client still sending never sees the refusal (nginx's lingering close).
LINGER_S = 2.0
log = logging.getLogger("crewyard.httplimits")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
EVERYWHERE: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def proxies(trusted: str | list[str]) -> tuple[Network, ...]:
    """The networks of uvicorn's ``forwarded_allow_ips`` (``FORWARDED_ALLOW_IPS``: addresses
    and networks, comma-separated, or ``*``); names and malformed entries are left out."""
    entries = [e.strip() for e in (trusted.split(",") if isinstance(trusted, str) else trusted)]
    if "*" in entries:
        return EVERYWHERE
    out: list[Network] = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue
    return tuple(out)


@dataclass
class ConnectionLimits:
    """The limits of one server, and the connections it holds per address."""

    head_timeout_s: float = 15.0
    per_address: int = 512
    max_head_bytes: int = MAX_HEAD_BYTES
    #: A request's body must keep arriving at this many bytes a second (over each
    #: ``head_timeout_s``), unless the app is the one not reading it.
    min_body_rate: int = 1024
    #: A response the client takes nothing of for this long ends its connection.
    write_stall_s: float = 60.0
    #: Addresses whose connections are not counted: a reverse proxy's, which limits its own
    #: clients (loopback, and the proxies trusted for ``X-Forwarded-For``: :func:`proxies`).
    exempt: tuple[Network, ...] = LOOPBACK
    held: Counter[str] = field(default_factory=Counter)


def limited_protocol(limits: ConnectionLimits) -> type[LimitedHttp]:
    """uvicorn's ``http`` protocol class for a server with ``limits`` (``uvicorn.Config(http=…)``)."""
    return type("LimitedHttp", (LimitedHttp,), {"limits": limits})


def counted_as(host: str, exempt: tuple[Network, ...] = LOOPBACK) -> str | None:
    """What connections from ``host`` are counted under: the address, or for IPv6 its /64 (one
    host is given a whole /64, so counting single addresses would count nothing); None for an
    ``exempt`` address and for peers that are not IP addresses (a Unix socket's)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in exempt):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the refusal is already chosen."""


class LimitedHttp(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: Any = None
        self._stall: Any = None  # while the client takes nothing of a response
        self._linger: Any = None  # after a refusal, until the connection closes
        self._in_head = True  # the bytes arriving now belong to a request's head
        self._in_body = False  # a request's head is in, its body is not all in yet
        self._body_bytes = 0  # of the body, since the timer was last armed
        self._begins = 0  # heads begun so far (one may begin inside a piece, after a body)
        self._head_bytes = 0  # of the head under way, as they arrived (bounds one never finished)
        self._head_parsed = 0  # of the head under way, as parsed (exact)
        self._moved = False  # the last piece carried body, or began or ended a message
        self._stalled_bytes = 0  # pieces since the last that moved: trailers, CRLFs, extensions
        self._refusal: tuple[int, str, str] | None = None
        self._address: str | None = None  # counted in ``limits.held`` while this is open

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        limits = self.limits
        group = counted_as(self.client[0], limits.exempt) if self.client else None
        if group is not None and limits.per_address:
            if limits.held[group] >= limits.per_address:
                self._refuse(
                    503,
                    "too_many_connections",
                    f"this address has {limits.per_address} connections open already;"
                    " close some and try again",
                )
                return
            limits.held[group] += 1
            self._address = group
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._unstall()
        if self._linger is not None:
            self._linger.cancel()
        if self._address is not None:
            adjust(self.limits.held, self._address, -1)
            self._address = None
        super().connection_lost(exc)

    def _should_upgrade(self) -> bool:
        # Nothing here speaks WebSocket: a request asking for it is an HTTP request like any
        # other (the transport is never handed to another protocol, whose end this would miss).
        return False

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        self._unset_keepalive_if_required()
        begins, self._moved = self._begins, False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asked for an upgrade and is answered as HTTP; the parser reads no more
            # of this connection, so it ends with that answer.
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()
            else:
                self.cycle.keep_alive = False
            return
        except httptools.HttpParserError:
            self._refuse(*(self._refusal or (400, "bad_request", "the request is not valid HTTP/1.1")))
            return
        limit = self.limits.max_head_bytes
        if self._in_head and self._begins == begins:  # this whole piece is head, still unfinished
            self._head_bytes += len(data)
            if self._head_bytes > limit:
                self._refuse(*self._too_large())
                return
        self._stalled_bytes = 0 if self._moved or self._in_head else self._stalled_bytes + len(data)
        if self._stalled_bytes > limit:  # bytes that are neither head nor body: trailers without end
            self._refuse(*self._too_large())
            return
        if self._timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # bytes while no request is under way: they get as long as a head

    # -- parser callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._head_parsed = True, 0, 0
        self._begins += 1
        self._moved = True
        self._disarm()
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._head_parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_parsed += len(name) + len(value) + 4  # ": " and CRLF
        if not self._in_head:  # a trailer (after a chunked body): counted as head, never kept
            if self._head_parsed > self.limits.max_head_bytes:
                self._refusal = self._too_large()
                raise _Refused
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._head_parsed > self.limits.max_head_bytes:  # answered as a head, so still one
            self._refusal = self._too_large()
            raise _Refused
        self._in_head, self._in_body, self._body_bytes = False, True, 0
        if (
            self.cycle is not None
            and not self.cycle.response_complete
            and len(self.pipeline) >= MAX_PIPELINED
        ):
            # Requests sent without reading the answers: each waits in memory for its turn.
            self._refusal = (
                429,
                "too_many_requests",
                f"more than {MAX_PIPELINED} requests wait on this connection",
            )
            raise _Refused
        self._arm()  # the body's pace, until the message is complete
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._moved = True
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._moved, self._in_body = True, False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.pipeline:  # more requests wait: take no more until they are answered
            self.flow.pause_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self.limits.write_stall_s, self._stalled)

    def resume_writing(self) -> None:
        self._unstall()
        super().resume_writing()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", msg)

    # -- limits ----------------------------------------------------------------------------------

    def _too_large(self) -> tuple[int, str, str]:
        return (
            431,
            "headers_too_large",
            f"the request line and headers are larger than {self.limits.max_head_bytes:,} bytes",
        )

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.limits.head_timeout_s, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        """``head_timeout_s`` passed: a head not complete, a body too slow, or bytes while no
        request is under way."""
        self._timer = None
        limits = self.limits
        if self.transport.is_closing():
            return
        if self._in_head:
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # a pipelined request behind a response under way: not late yet
                return
            message = f"the request's headers did not arrive within {limits.head_timeout_s:g} s"
        elif self._in_body:
            moved, self._body_bytes = self._body_bytes, 0
            if moved >= limits.min_body_rate * limits.head_timeout_s or self.flow.read_paused:
                self._arm()  # the client keeps up, or the app is the one not reading
                return
            message = f"the request's body arrived slower than {limits.min_body_rate:,} bytes a second"
        else:
            message = "nothing but stray bytes arrived"  # CRLFs or trailers after an answer
        self._refuse(408, "request_timeout", message)

    def _stalled(self) -> None:
        self._stall = None
        log.info("%s took nothing of a response for %g s: closed", self.client, self.limits.write_stall_s)
        self.transport.abort()  # close() would wait for the buffer to drain: it never does

    def _unstall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` in the API's error shape and close; only a request's head is
        answered (a request that got past it has its answer, or is having it written)."""
        self._refusal = (status, code, message)
        self._disarm()
        if self.transport.is_closing():
            return
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            body = msgspec.json.encode({"error": {"code": code, "message": message}})
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\nconnection: close\r\n")
            head.append(b"content-length: %d\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
            if self.transport.can_write_eof():
                self.transport.write_eof()  # the refusal, then our end; what comes is dropped
                self._linger = self.loop.call_later(LINGER_S, self.transport.close)
                return
        self.transport.close()
