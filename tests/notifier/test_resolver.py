"""Name resolution for webhook attempts: bounded within the attempt, on the notifier's own threads,
one lookup per name at a time, black-holed names kept apart from everyone else's.

There is no way to black-hole DNS here: ``socket.getaddrinfo`` is swapped for one that blocks
(as glibc does for a whole resolver timeout when a name server never answers) for names under
``blackhole.test`` until the test lets them go. No durations are asserted: only what completes
while the black-holed lookups are still stuck, within bounds far above the attempt timeout."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crewyard.notifier.resolver import Resolver, ResolveTimeout, UnusableName
from crewyard.notifier.sender import Guard, Sender

GENEROUS_S = 30.0  # far above every attempt's bound: reaching it means something waited for DNS


class BlackHole:
    """``getaddrinfo`` that blocks for ``*.blackhole.test`` until released, recording which
    thread each lookup ran on."""

    def __init__(self) -> None:
        self.real = socket.getaddrinfo
        self.release = threading.Event()
        self.lookups: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, host: Any, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.lookups.append((str(host), threading.current_thread().name))
        if str(host).endswith(".blackhole.test"):
            self.release.wait()
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return self.real(host, *args, **kwargs)

    def blocked(self) -> list[tuple[str, str]]:
        with self.lock:
            return [x for x in self.lookups if x[0].endswith(".blackhole.test")]


@pytest.fixture
def black_holed_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackHole]:
    hole = BlackHole()
    monkeypatch.setattr(socket, "getaddrinfo", hole)
    try:
        yield hole
    finally:
        hole.release.set()  # the stuck threads end (as glibc's lookups give up, eventually)


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fast_receiver() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _guard() -> Guard:
    return Guard(policy="private", local_ports=set(), local_addresses=set(), platform_endpoints=set())


async def test_a_receiver_by_name_is_delivered_while_dozens_of_black_holed_ones_are_stuck(
    black_holed_dns: BlackHole, fast_receiver: int
) -> None:
    # The reviewer's case: a 1 s timeout, a dozen names that never resolve (tried three times
    # each, at once), and a fast receiver addressed by name. Before, the lookups ran on the
    # loop's default executor (6 threads here) without a bound: the fast one waited for them.
    sender = Sender(_guard(), 1.0)
    loop = asyncio.get_running_loop()
    try:
        stuck = [
            asyncio.create_task(sender.post(f"http://h{i}.blackhole.test:9/hook", {}, b"{}"))
            for i in range(12)
            for _ in range(3)
        ]
        good = asyncio.create_task(sender.post(f"http://localhost:{fast_receiver}/hook", {}, b"{}"))
        got = await asyncio.wait_for(good, GENEROUS_S)
        assert got.status_code == 200 and got.error is None
        # The process's default executor is not theirs to fill.
        assert await asyncio.wait_for(loop.run_in_executor(None, lambda: "free"), GENEROUS_S) == "free"
        # Each stuck attempt ends on its own, within its bound, as a failed (retried) attempt.
        ended = await asyncio.wait_for(asyncio.gather(*stuck), GENEROUS_S)
        assert not black_holed_dns.release.is_set()  # ...while their lookups are still stuck
        for attempt in ended:
            assert attempt.status_code is None and not attempt.refused
            assert "timed out resolving h" in (attempt.error or ""), attempt
        # One lookup per name in flight, on the notifier's own threads.
        blocked = black_holed_dns.blocked()
        assert len(blocked) == 12 and len({host for host, _ in blocked}) == 12
        assert all(name.startswith("crewyard-webhook-dns") for _, name in blocked)
    finally:
        await sender.close()


async def test_names_that_were_black_holed_are_resolved_apart_from_the_others(
    black_holed_dns: BlackHole,
) -> None:
    resolver = Resolver(threads=2, slow_threads=1)
    try:
        names = ["a.blackhole.test", "b.blackhole.test"]
        for name in names:  # both main threads taken; each name is now slow
            with pytest.raises(ResolveTimeout, match=f"resolving {name}"):
                await resolver.resolve(name, 80, 0.2)
        assert all(resolver.is_slow(n) for n in names) and not resolver.is_slow("localhost")
        # Their lookups give up (as glibc's do, eventually); the names are tried again later.
        black_holed_dns.release.set()
        for name in names:  # joins the lookup still in flight, if any: it ends with an error
            with pytest.raises(OSError):
                await resolver.resolve(name, 80, GENEROUS_S)
        before = len(black_holed_dns.blocked())
        black_holed_dns.release.clear()
        for name in names:
            with pytest.raises(ResolveTimeout):
                await resolver.resolve(name, 80, 0.2)
        # The second round took the slow pool's one thread (and waits in its queue): the main
        # pool is free for everyone else.
        assert [t for _, t in black_holed_dns.blocked()[before:]] == ["crewyard-webhook-dns-slow_0"]
        assert await asyncio.wait_for(resolver.resolve("localhost", 80, GENEROUS_S), GENEROUS_S)
    finally:
        black_holed_dns.release.set()
        resolver.close()


async def test_a_literal_address_needs_no_lookup(black_holed_dns: BlackHole) -> None:
    resolver = Resolver(threads=1, slow_threads=1)
    try:
        assert [str(ip) for ip in await resolver.resolve("[::1]", 80, 0.1)] == ["::1"]
        assert [str(ip) for ip in await resolver.resolve("10.0.0.1", 80, 0.1)] == ["10.0.0.1"]
        assert black_holed_dns.lookups == []
    finally:
        resolver.close()


async def test_a_name_no_lookup_can_be_made_for_is_unusable_not_a_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver(threads=1, slow_threads=1)
    try:
        # Refused before any thread is spent on it.
        for name in ("a..com", ".a.com", "a.com..", "a" * 64 + ".com"):
            with pytest.raises(UnusableName, match="cannot resolve"):
                await resolver.resolve(name, 80, GENEROUS_S)

        # Whatever else the codec or getaddrinfo refuses with a ValueError ends the same way.
        def refuses(host: Any, *args: Any, **kwargs: Any) -> Any:
            raise UnicodeError("encoding with 'idna' codec failed")

        monkeypatch.setattr(socket, "getaddrinfo", refuses)
        with pytest.raises(UnusableName, match="idna"):
            await resolver.resolve("odd.example", 80, GENEROUS_S)
    finally:
        resolver.close()


async def test_a_literal_address_is_given_without_its_zone_id() -> None:
    # The target checks compare the address with sets (metadata, the platform's endpoints): a
    # zoned one would equal none of them.
    resolver = Resolver(threads=1, slow_threads=1)
    try:
        assert [str(ip) for ip in await resolver.resolve("[fd00:ec2::254%1]", 80, 0.1)] == ["fd00:ec2::254"]
    finally:
        resolver.close()
