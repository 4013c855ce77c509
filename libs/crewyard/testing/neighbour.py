"""A test server on a neighbouring "host": a network namespace of its own, at a private address.

Crews on bwrap and docker get a private network on which every address of the host is
unreachable — a fake LLM on the host's loopback is out of their reach, by design. In production a
crew reaches a company service (a model gateway, a package proxy) on a private address that the
operator allows (``CREWYARD_NETWORK_ALLOW``). :class:`Neighbour` makes exactly that for a test: a
network namespace joined to this one by a veth pair (``10.254.X.Y/30``), in which servers listen
on the far end's address; the platform under test is started with that address allowed.

Only loopback-like traffic results: the namespace is made here, on this machine, and reaches
nothing else. Root only. The namespace belongs to a thread of this process, so it — and the veth
pair with it — ends when the process does: a killed test session leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import queue
import random
import subprocess
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from crewyard import privatenet

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_TOOLS_ENV = privatenet.HOST_TOOL_ENV


def _ip(*args: str, netns: str | None = None) -> None:
    prefix = ["nsenter", f"--net={netns}", "--"] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, env=_TOOLS_ENV, timeout=30)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 in 10.254.0.0/16 that nothing on this host uses (other sessions' neighbours included)."""
    taken = [*privatenet.host_addresses(), *privatenet.connected_networks()]
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.254.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /30 in 10.254.0.0/16 for a test neighbour")


class Neighbour:
    """``with Neighbour() as n: server = n.run(lambda: FakeLLM(host=n.address).start())``."""

    def __init__(self) -> None:
        self.subnet = _free_subnet()
        hosts = list(self.subnet.hosts())
        self.host_side, self.address = str(hosts[0]), str(hosts[1])
        tag = os.urandom(3).hex()
        self._link = f"cy{tag}h"
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]] | None] = queue.Queue()
        self._tid: int | None = None
        self._thread: threading.Thread | None = None

    @property
    def allow(self) -> str:
        """What to put in ``CREWYARD_NETWORK_ALLOW`` for crews to reach the neighbour."""
        return f"{self.address}/32"

    def _serve(self, ready: queue.Queue[BaseException | int]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:  # this thread alone moves to a new network namespace
            ready.put(OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed (root needed)"))
            return
        ready.put(threading.get_native_id())
        while (item := self._calls.get()) is not None:
            call, reply = item
            try:
                reply.put((True, call()))
            except BaseException as exc:
                reply.put((False, exc))

    def run(self, call: Callable[[], T]) -> T:
        """Call ``call`` inside the namespace: sockets it opens listen there (and stay there)."""
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._calls.put((call, reply))
        ok, value = reply.get(timeout=60)
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def __enter__(self) -> Neighbour:
        ready: queue.Queue[BaseException | int] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="neighbour", daemon=True)
        self._thread.start()
        got = ready.get(timeout=30)
        if isinstance(got, BaseException):
            raise got
        self._tid = got
        netns = f"/proc/{os.getpid()}/task/{got}/ns/net"
        peer = self._link[:-1] + "n"
        prefix = self.subnet.prefixlen
        try:
            _ip("link", "add", self._link, "type", "veth", "peer", "name", peer, "netns", str(got))
            _ip("addr", "add", f"{self.host_side}/{prefix}", "dev", self._link)
            _ip("link", "set", self._link, "up")
            _ip("addr", "add", f"{self.address}/{prefix}", "dev", peer, netns=netns)
            _ip("link", "set", peer, "up", netns=netns)
            _ip("link", "set", "lo", "up", netns=netns)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            _ip("link", "del", self._link)  # both ends go
        self._calls.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
