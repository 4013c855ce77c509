"""What the failure tests (chaos, cluster) check a platform with, from the outside: API calls
that wait out restarts, SSE followers that reconnect, the stream's contents, read-model dumps."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import nats

from crewyard import settings as settings_mod
from crewyard.client import tls_context
from crewyard.platform import rebuild_projection
from crewyard.readmodel import ReadModel

TERMINAL = {"run.completed", "run.failed", "run.canceled"}


def _auth(key: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or {}), **({"Authorization": f"Bearer {key}"} if key else {})}


def call(
    method: str, url: str, deadline: float, *, key: str | None = None, headers: dict | None = None, **kw
) -> httpx.Response:
    """An API call with API key ``key`` that waits out a gateway restart (connection errors, 5xx)."""
    while True:
        try:
            r = httpx.request(
                method, url, timeout=10, headers=_auth(key, headers), verify=tls_context(), **kw
            )
            if r.status_code < 500:
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} kept failing")
        time.sleep(0.3)


class Follower(threading.Thread):
    """An SSE client that reconnects with Last-Event-ID until it sees the run's terminal event."""

    def __init__(self, api: str, run_id: str, deadline: float, key: str | None = None) -> None:
        super().__init__(daemon=True)
        self.api, self.run_id, self.deadline, self.key = api, run_id, deadline, key
        self.seen: list[tuple[int, str]] = []
        self.reconnects = 0
        self.done = False

    def run(self) -> None:
        while not self.done and time.monotonic() < self.deadline:
            headers = _auth(self.key, {"Last-Event-ID": str(self.seen[-1][0])} if self.seen else {})
            try:
                with httpx.stream(
                    "GET",
                    f"{self.api}/v1/runs/{self.run_id}/events",
                    verify=tls_context(),
                    headers=headers,
                    timeout=httpx.Timeout(10, read=30),
                ) as resp:
                    if resp.status_code != 200:
                        raise httpx.HTTPError(f"status {resp.status_code}")
                    seq = None
                    for line in resp.iter_lines():
                        if line.startswith("id:"):
                            seq = int(line[3:])
                        elif line.startswith("data:") and seq is not None:
                            data = json.loads(line[5:])
                            self.seen.append((seq, data["id"]))
                            if data["type"] in TERMINAL:
                                self.done = True
                                return
            except (httpx.HTTPError, ValueError):
                pass
            self.reconnects += 1
            time.sleep(0.3)


async def _stream_contents(nats_url: str, creds: Path) -> list[tuple[int, str, dict]]:
    nc = await nats.connect(nats_url.split(","), user_credentials=str(creds / "admin.creds"))
    js = nc.jetstream()
    last = (await js.stream_info("CREWYARD_EVENTS")).state.last_seq
    out = []
    sub = await js.subscribe("crewyard.evt.>", ordered_consumer=True)
    while not out or out[-1][0] < last:
        msg = await sub.next_msg(timeout=10)
        out.append((msg.metadata.sequence.stream, msg.subject, json.loads(msg.data)))
    await nc.drain()
    return out


async def _dump(db: Path) -> dict:
    rm = await ReadModel.open(db)
    try:
        return await rm.dump()
    finally:
        await rm.close()


def stream_contents(nats_url: str, creds: Path) -> list[tuple[int, str, dict]]:
    """Every event in the stream: (sequence, subject, envelope); ``creds``: the users' folder."""
    return asyncio.run(_stream_contents(nats_url, creds))


def read_model_equals_rebuild(data_dir: Path, nats_url: str, creds: Path) -> None:
    """The read model under ``data_dir`` (its gateway and projector stopped) equals a rebuild."""
    db = data_dir / "readmodel.sqlite3"
    live = asyncio.run(_dump(db))
    settings = settings_mod.load(data_dir, nats_url=nats_url, nats_creds=str(creds))
    asyncio.run(rebuild_projection(settings))
    assert asyncio.run(_dump(db)) == live, f"the read model in {data_dir} differs from a rebuild"


async def _last_seq(nats_url: str, creds: Path) -> int:
    nc = await nats.connect(
        nats_url.split(","), connect_timeout=2, user_credentials=str(creds / "admin.creds")
    )
    try:
        return int((await nc.jetstream(timeout=5).stream_info("CREWYARD_EVENTS")).state.last_seq)
    finally:
        await nc.close()


def last_seq(nats_url: str, creds: Path, timeout: float = 60.0) -> int:
    """The stream's last sequence (asked again while the cluster elects a leader)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return asyncio.run(_last_seq(nats_url, creds))
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
