"""One webhook attempt: address checks at send time, bounded reads, Retry-After, no redirects."""

from __future__ import annotations

import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crewyard.notifier.sender import EXCERPT_BYTES, MAX_RETRY_AFTER_S, Guard, Sender, ThisMachine


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen, srv.answer = [], (200, {}, b"ok")  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def guard(policy: str = "private", local_ports: set[int] | None = None) -> Guard:
    return Guard(
        policy=policy, local_ports=local_ports or set(), local_addresses=set(), platform_endpoints=set()
    )  # type: ignore[arg-type]


def url(srv: ThreadingHTTPServer, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{srv.server_address[1]}/hook"


async def test_a_name_is_resolved_and_checked_then_the_checked_address_is_used(server):
    sender = Sender(guard("private"), 2.0)
    try:
        got = await sender.post(url(server, "localhost"), {"x-test": "1"}, b"{}")
        assert got.status_code == 200 and got.excerpt == "ok" and got.error is None
        assert server.seen[-1]["Host"] == f"localhost:{server.server_address[1]}"  # the name is kept
        refused = await Sender(guard("public"), 2.0).post(url(server, "localhost"), {}, b"{}")
        assert refused.status_code is None and "private or loopback" in (refused.error or "")
        assert refused.refused  # final: the delivery is not retried
    finally:
        await sender.close()
    assert len(server.seen) == 1  # the refused attempt never connected


async def test_the_platform_own_ports_are_refused(server):
    port = server.server_address[1]
    got = await Sender(guard("private", {port}), 2.0).post(url(server), {}, b"{}")
    assert "platform's own endpoint" in (got.error or "") and not server.seen
    on_other_ip = Guard(
        policy="private",
        local_ports=set(),
        local_addresses=set(),
        platform_endpoints={(ipaddress.ip_address("127.0.0.1"), port)},
    )
    got = await Sender(on_other_ip, 2.0).post(url(server), {}, b"{}")
    assert "platform's own endpoint" in (got.error or "")


async def test_bodies_are_read_only_up_to_the_cap_and_retry_after_is_read(server):
    server.answer = (503, {"Retry-After": "7"}, b"x" * 100_000)
    got = await Sender(guard(), 2.0).post(url(server), {}, b"{}")
    assert got.status_code == 503 and got.retry_after_s == 7.0
    assert 0 < len(got.excerpt) <= EXCERPT_BYTES


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("300000000000", MAX_RETRY_AFTER_S),
        ("\u00b2", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
    ],
)
async def test_an_odd_retry_after_is_read_within_bounds_or_not_at_all(server, value, read):
    server.answer = (429, {"Retry-After": value.encode("utf-8").decode("latin-1")}, b"")
    got = await Sender(guard(), 2.0).post(url(server), {}, b"{}")
    assert got.status_code == 429 and got.retry_after_s == read


async def test_a_url_no_client_can_use_is_a_refused_attempt_not_an_exception():
    got = await Sender(guard(), 1.0).post("http://\u2460.\u2460.\u2460.\u2460/x", {}, b"{}")
    assert got.refused and got.status_code is None and "cannot be used" in (got.error or "")


@pytest.mark.parametrize(
    "bad", ["http://a..com/", "http://.a.com/", "http://a.com../", "http://" + "a" * 64 + ".example.com/"]
)
async def test_a_name_no_lookup_can_be_made_for_is_a_refused_attempt_not_an_exception(bad: str) -> None:
    # Saved before the API refused such hosts: getaddrinfo raises UnicodeError for them (not
    # OSError), which escaped the attempt, and the delivery was tried again forever unrecorded.
    sender = Sender(guard(), 1.0)
    try:
        got = await sender.post(bad, {}, b"{}")
    finally:
        await sender.close()
    assert got.refused and got.status_code is None and "cannot resolve" in (got.error or ""), got


async def test_redirects_are_answers_not_instructions(server):
    server.answer = (307, {"Location": "http://127.0.0.1:9/elsewhere"}, b"")
    got = await Sender(guard(), 2.0).post(url(server), {}, b"{}")
    assert got.status_code == 307 and len(server.seen) == 1


async def test_unreachable_and_unresolvable_targets_are_errors_not_exceptions():
    refused = await Sender(guard(), 1.0).post("http://127.0.0.1:9/nothing-listens", {}, b"{}")
    assert refused.status_code is None and refused.error
    unknown = await Sender(guard(), 1.0).post("http://no-such-host.invalid/hook", {}, b"{}")
    assert unknown.status_code is None and "cannot resolve" in (unknown.error or "")


def _outward_address() -> str | None:
    """This machine's address on its way out (no packet is sent), if it has a route at all."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        return str(probe.getsockname()[0])


async def test_an_api_on_every_address_is_its_own_endpoint_through_each_of_them(server):
    # The API bound to 0.0.0.0 is reached through the machine's other addresses too; only its
    # host name's were known, so a webhook could post to the platform's own trigger URLs.
    mine = ThisMachine()
    assert ipaddress.ip_address("127.0.0.1") in mine
    assert ipaddress.ip_address("192.0.2.123") not in mine  # TEST-NET-1: nobody's
    assert ipaddress.ip_address("2001:db8::7") not in mine and "127.0.0.1" not in mine
    outward = _outward_address()
    if outward is not None:
        assert ipaddress.ip_address(outward) in mine
    port = server.server_address[1]
    own = Guard(policy="private", local_ports={port}, local_addresses=mine, platform_endpoints=set())
    for host in ("127.0.0.1", *([outward] if outward else [])):
        got = await Sender(own, 2.0).post(f"http://{host}:{port}/v1/runs", {}, b"{}")
        assert "platform's own endpoint" in (got.error or ""), (host, got)
    assert not server.seen


async def test_no_cookie_a_receiver_sets_goes_to_anyone(server):
    # Requests go to the checked address: a cookie set by one receiver would be sent to every
    # other receiver at that address (and the jar would grow at a receiver's wish).
    server.answer = (200, {"Set-Cookie": "planted=by-a-receiver; Path=/"}, b"ok")
    sender = Sender(guard("private"), 2.0)
    try:
        for host in ("localhost", "127.0.0.1"):
            got = await sender.post(url(server, host), {}, b"{}")
            assert got.status_code == 200, got
    finally:
        await sender.close()
    assert [h.get("Cookie") for h in server.seen] == [None, None]
