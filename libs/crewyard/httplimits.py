"""Limits on an HTTP connection before any request of it reaches an app.

uvicorn's httptools protocol keeps a connection that never finishes a request's head for ever,
buffers a head of any size, and lets one address open as many connections as it likes: each
costs a file descriptor and memory, taken before anyone is authenticated, so one host could hold
a server's descriptors or memory (slowloris) without ever sending a key. :class:`LimitedHttp` is
that protocol with three limits, used by the API and by every service's health listener:

- **head timeout**: a request's head (request line and headers) must be complete within
  ``head_timeout_s`` of the connection being made or of its first byte (the next request of a
  keep-alive connection; an idle one is closed by uvicorn's keep-alive timeout): 408. Bytes that
  arrive while no request is under way (the rest of a body its answer did not wait for, CRLFs
  between requests) get as long, then the connection is closed;
- **head size**: at most :data:`MAX_HEAD_BYTES` (64 KiB, counted exactly once the head is
  parsed; a head that never ends is cut once what arrived of it passes that, give or take one
  read). Trailers after a chunked body count the same and are never kept: 431;
- **connections per address**: one client address (an IPv6 client's /64) holds at most
  ``per_address`` connections at a time (0: no limit): 503, and the connection is closed.
  A reverse proxy's connections are not counted (it limits its own clients): loopback's, and
  those of the proxies trusted for ``X-Forwarded-For`` (``FORWARDED_ALLOW_IPS``).

Nothing here speaks WebSocket: a request asking for an upgrade is answered as HTTP and ends its
connection (handed to uvicorn's WebSocket protocol, a connection's end was never seen here, and
its address kept the count for good). Refusals, and uvicorn's own 400 for a request that is not
HTTP, are answered in the API's error shape (``{"error": {"code", "message"}}``) and close the
connection. A connection with a response under way (a pipelined request behind a stream) is
closed without one.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The largest request head: request line and headers (nginx takes 32 KiB, Node 16 KiB).
MAX_HEAD_BYTES = 64 * 1024
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
        self._in_head = True  # the bytes arriving now belong to a request's head
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
        if self._address is not None:
            held = self.limits.held
            held[self._address] -= 1
            if held[self._address] <= 0:
                del held[self._address]
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
        self._in_head = False
        self._disarm()
        if self._head_parsed > self.limits.max_head_bytes:
            self._refusal = self._too_large()
            raise _Refused
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._moved = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._moved = True
        self._disarm()
        super().on_message_complete()

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
        """A head, or bytes while no request is under way, took longer than ``head_timeout_s``."""
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request waits behind a response under way (its reading is paused):
            # it is not late yet.
            self._arm()
            return
        if not self._in_head:
            # The rest of a body its answer did not wait for, CRLFs, trailers: nothing to answer.
            self._refusal = (408, "request_timeout", "")
            self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request's headers did not arrive within {self.limits.head_timeout_s:g} s",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` in the API's error shape (unless a response is under way) and close."""
        self._refusal = (status, code, message)
        self._disarm()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = msgspec.json.encode({"error": {"code": code, "message": message}})
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\nconnection: close\r\n")
            head.append(b"content-length: %d\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
        self.transport.close()
