"""Resolving webhook hosts: bounded in time, on threads of its own, one lookup per name at a time.

``getaddrinfo`` blocks a thread for as long as the name servers make it (glibc's whole resolver
timeout when one never answers), and cannot be cancelled. On the event loop's default executor a
dozen black-holed names held every thread, and every other webhook addressed by name — and
everything else in the process using that executor (``crewyard up`` runs all services in one) —
waited behind them. So:

- lookups run on this resolver's own bounded pools, never the default executor;
- an attempt waits for its lookup at most its ``timeout`` (the caller counts it in the attempt):
  a lookup still running then is the attempt's failure, while the thread finishes on its own;
- one lookup per host and port is in flight at a time: later attempts for the same name wait for
  that one instead of taking another thread, so a black-holed name holds at most one thread;
- a host whose lookup outlived an attempt's wait is *slow* for :data:`SLOW_FOR_S`: its next
  lookups go to a small pool of their own, so many black-holed names fill that pool, not the one
  every other receiver's names are resolved on;
- a name no lookup can be made for (an empty or over-long label: ``getaddrinfo`` raises
  ``UnicodeError`` for those, not ``OSError``) is :class:`UnusableName`, without a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crewyard.core.targets import IP, TargetRefused, check_host_name, unzoned
from crewyard.errors import CrewyardError

#: Threads resolving names not known to be slow, and names that were.
THREADS, SLOW_THREADS = 32, 4
#: How long a name stays slow after a lookup of it outlived an attempt, and how many are kept.
SLOW_FOR_S, SLOW_KEPT = 900.0, 10_000

Infos = list[tuple[Any, ...]]


class ResolveTimeout(CrewyardError):
    """A lookup did not answer within the attempt's bound (it may still be running). Not an
    ``OSError``: that is a name that does not resolve."""


class UnusableName(CrewyardError):
    """A name no lookup can ever be made for (``a..com``, a label over 63 characters; saved
    before the API refused such URLs). Not an ``OSError``: asking again will not help."""


class Resolver:
    def __init__(self, threads: int = THREADS, slow_threads: int = SLOW_THREADS) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="crewyard-webhook-dns")
        self._slow_pool = ThreadPoolExecutor(slow_threads, thread_name_prefix="crewyard-webhook-dns-slow")
        #: The lookup in flight per (host, port): shared by every attempt that needs it meanwhile.
        self._pending: dict[tuple[str, int], asyncio.Future[Infos]] = {}
        #: host → when a lookup of it last outlived an attempt (monotonic), oldest first.
        self._slow: OrderedDict[str, float] = OrderedDict()

    def close(self) -> None:
        # Threads stuck in getaddrinfo cannot be stopped; they end when the lookup gives up.
        for pool in (self._pool, self._slow_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    def is_slow(self, host: str) -> bool:
        since = self._slow.get(host)
        if since is not None and time.monotonic() - since > SLOW_FOR_S:
            del self._slow[host]
            return False
        return since is not None

    async def resolve(self, host: str, port: int, timeout: float) -> list[IP]:
        """The addresses of ``host`` (a literal address as is), IPv6 zone ids dropped (they would
        make an address unequal to itself in the target checks); :class:`ResolveTimeout` after
        ``timeout`` seconds, ``OSError`` when the name does not resolve, :class:`UnusableName`
        when it cannot be looked up at all."""
        literal = host.strip("[]")
        with contextlib.suppress(ValueError):
            return [unzoned(ipaddress.ip_address(literal))]
        try:
            check_host_name(host)
        except TargetRefused as exc:
            raise UnusableName(f"cannot resolve {host}: {exc}") from None
        key = (host, port)
        lookup = self._pending.get(key)
        if lookup is None:
            pool = self._slow_pool if self.is_slow(host) else self._pool
            lookup = asyncio.wrap_future(pool.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM))
            self._pending[key] = lookup
            lookup.add_done_callback(lambda done: self._finished(key, done))
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.shield(lookup)
        except TimeoutError:
            self._slow[host] = time.monotonic()
            self._slow.move_to_end(host)
            while len(self._slow) > SLOW_KEPT:
                self._slow.popitem(last=False)
            raise ResolveTimeout(f"timed out resolving {host} after {timeout:g} s") from None
        except ValueError as exc:  # UnicodeError (a label the codec refuses), an embedded NUL
            raise UnusableName(f"cannot resolve {host}: {exc}") from None
        return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]

    def _finished(self, key: tuple[str, int], lookup: asyncio.Future[Infos]) -> None:
        if self._pending.get(key) is lookup:
            del self._pending[key]
        if not lookup.cancelled():
            lookup.exception()  # retrieved: nobody may be waiting for it any more
