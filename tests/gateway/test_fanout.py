"""A run's SSE clients are written straight from its feed once caught up, and a client too slow
to be written that way (its connection paused) is served through its own response instead:
every client gets every event once, in order, whatever the others do."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crewyard.gateway.sse import SLICE_BYTES
from crewyard.testing.api import deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

#: Waits for the gate file, then emits ``n`` large events (3 KB each: enough for a reader that
#: never reads to fill the kernel's buffers and pause its connection).
CREW = """
import os, time
from crewyard_runtime import emit

def run(inputs):
    while not os.path.exists(inputs["gate"]):
        time.sleep(0.02)
    for i in range(inputs["n"]):
        emit("tool.result", tool="fanout", output=f"{i:06d}" + "x" * 3000)
    return {"n": inputs["n"]}
"""
EVENTS = 3000


def _deliveries(api: httpx.Client) -> dict[str, float]:
    text = api.get("/metrics").text
    found = re.findall(r'^crewyard_sse_deliveries_total\{path="(\w+)"\} (\S+)$', text, re.M)
    return {path: float(value) for path, value in found}


def _slow_reader(platform: PlatformProcess, path: str) -> socket.socket:
    """A connection that asks for the stream and reads nothing yet, with the smallest receive
    buffer the kernel allows."""
    host, port = httpx.URL(platform.api).host, httpx.URL(platform.api).port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    auth = platform.headers["Authorization"]
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode())
    return sock


def _read_stream(sock: socket.socket) -> tuple[list[dict[str, Any]], int]:
    """Everything the slow reader was sent, up to the end of its chunked response, as SSE messages;
    and the largest chunk it came in."""
    sock.settimeout(60)
    raw = b""
    while not raw.endswith(b"\r\n0\r\n\r\n"):
        data = sock.recv(1 << 20)
        assert data, f"the connection ended before the response did: {raw[-200:]!r}"
        raw += data
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"transfer-encoding: chunked" in head.lower()
    body, largest = b"", 0
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest, largest = body + rest[:size], rest[size + 2 :], max(largest, size)
    messages = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            data = json.loads(fields["data"])
            messages.append({"id": int(fields["id"]), "event": fields["event"], "data": data})
    return messages, largest


def test_every_client_gets_every_event_once_whether_pushed_to_or_slow(
    platform: PlatformProcess, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with platform.client(timeout=60) as api:
        dep = deploy(api, write_crew(tmp_path / "fanout", CREW), "fanout")
        body = {"deployment_id": dep["deployment_id"], "input": {"gate": str(gate), "n": EVENTS}}
        run_id = api.post("/v1/runs", json=body).json()["run_id"]
        path = f"/v1/runs/{run_id}/events"
        before = _deliveries(api)
        seen: list[list[dict[str, Any]]] = [[] for _ in range(3)]
        started = [threading.Event() for _ in seen]

        def follow(i: int) -> None:
            with platform.client(timeout=60) as own:
                seen[i] = sse_events(own, path, until=lambda got: started[i].set() or False)

        readers = [threading.Thread(target=follow, args=(i,)) for i in range(len(seen))]
        for t in readers:
            t.start()
        slow = _slow_reader(platform, path)
        try:
            for s in started:
                assert s.wait(30), "a follower got no event"
            gate.touch()
            for t in readers:
                t.join(120)
                assert not t.is_alive()
            assert wait_run(api, run_id, timeout=120)["status"] == "succeeded"
            late, largest = _read_stream(slow)  # only now: its connection was paused meanwhile
        finally:
            slow.close()
        after = _deliveries(api)
        full = sse_events(api, path)

    ids = [m["id"] for m in full]
    outputs = [m["data"]["data"]["output"][:6] for m in full if m["event"] == "tool.result"]
    assert outputs == [f"{i:06d}" for i in range(EVENTS)]
    assert full[-1]["event"] == "run.completed"
    for got in [*seen, late]:
        assert [m["id"] for m in got] == ids
        assert [m["data"] for m in got] == [m["data"] for m in full]
    # The fast readers were written by the feed; the slow one was not (it could not take them).
    # (A fast reader the busy machine kept from reading for a moment is let go of by the feed
    # too and catches up on its own, so not every fast reader's event is counted as pushed.)
    pushed = after.get("pushed", 0) - before.get("pushed", 0)
    sent = after.get("sent", 0) - before.get("sent", 0)
    assert pushed >= EVENTS, (pushed, sent)
    assert sent >= EVENTS // 3, (pushed, sent)
    # What the slow reader missed came in pieces, each written after it took the last: written
    # whole, a run's megabytes sat in the gateway's buffer for every client that did not read.
    assert largest <= SLICE_BYTES + 4096, largest


@pytest.fixture(scope="module")
def small_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """A platform whose run feeds keep only 64 KiB of events (``CREWYARD_SSE_WINDOW``)."""
    p = PlatformProcess(tmp_path_factory.mktemp("window"), env={"CREWYARD_SSE_WINDOW": str(WINDOW)})
    p.start()
    yield p
    p.stop()


WINDOW = 64 << 10


def test_what_a_feed_no_longer_keeps_comes_from_the_stream_for_late_slow_and_resuming_readers(
    small_window: PlatformProcess, tmp_path: Path
) -> None:
    platform, gate, events = small_window, tmp_path / "gate", EVENTS  # 9 MB: ~140 windows
    with platform.client(timeout=60) as api:
        dep = deploy(api, write_crew(tmp_path / "window", CREW), "window")
        body = {"deployment_id": dep["deployment_id"], "input": {"gate": str(gate), "n": events}}
        run_id = api.post("/v1/runs", json=body).json()["run_id"]
        path = f"/v1/runs/{run_id}/events"
        before = _deliveries(api)
        live: list[dict[str, Any]] = []
        started = threading.Event()

        def follow() -> None:
            with platform.client(timeout=60) as own:
                live.extend(sse_events(own, path, until=lambda got: started.set() or False))

        reader = threading.Thread(target=follow)
        reader.start()
        slow = _slow_reader(platform, path)
        try:
            assert started.wait(30), "the live reader got no event"
            gate.touch()
            reader.join(120)
            assert not reader.is_alive()
            assert wait_run(api, run_id, timeout=120)["status"] == "succeeded"
            late, largest = _read_stream(slow)  # the feed moved on megabytes past it meanwhile
        finally:
            slow.close()
        mid = _deliveries(api)
        full = sse_events(api, path)  # after the run: its first events only in the stream
        resumed = sse_events(api, path, headers={"Last-Event-ID": str(full[50]["id"])})
        after = _deliveries(api)

    outputs = [m["data"]["data"]["output"][:6] for m in full if m["event"] == "tool.result"]
    assert outputs == [f"{i:06d}" for i in range(events)]
    assert full[-1]["event"] == "run.completed"
    for got in (live, late):
        assert [m["id"] for m in got] == [m["id"] for m in full]
        assert [m["data"] for m in got] == [m["data"] for m in full]
    assert [m["id"] for m in resumed] == [m["id"] for m in full[51:]]
    # The slow reader could not take the run's 9 MB while it was written (the kernel buffers a
    # few of them): it read the rest from the stream, still in pieces of at most a slice. So did
    # the reader after the run and the resumed one, for all but what the feed kept.
    slow_history = mid.get("history", 0) - before.get("history", 0)
    assert slow_history > 0 and largest <= SLICE_BYTES + 4096, (slow_history, largest)
    kept = 2 * WINDOW // 3000 + 2
    history = after.get("history", 0) - mid.get("history", 0)
    assert history >= (events - kept) + (events - 51 - kept), history
