"""A run's event stream lasts only as long as the key that opened it: revoked, the stream ends
within a second or so — whether the run is quiet (the stream's keep-alives) or busy (events the
run's shared feed writes to each client itself) — not when the run ends, up to days later.

Counted, not timed: a crew runs until the test opens its gate, so a stream that outlives its key
would go on with keep-alives or events far past the bounds below."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crewyard.testing.api import deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

PING_S = 0.2
#: Keep-alives or events a stream may still carry after its key was revoked (the key registry
#: follows the stream, a moment behind the answer; the check is asked once a second): far fewer
#: than it would carry.
GRACE_PINGS = 100
GRACE_EVENTS = 3_000

GATED = """
import os, time
from crewyard_runtime import emit

def run(inputs):
    i = 0
    while not os.path.exists(inputs["gate"]):  # until the test opens the gate
        if inputs["chatty"]:
            emit("tool.called", tool="tick", input={"i": i})
            i += 1
        time.sleep(0.01)
    return {"done": True}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("stream-access"), env={"CREWYARD_SSE_PING": str(PING_S)})
    p.start()
    with p.client() as admin:
        dep = deploy(admin, write_crew(tmp_path_factory.mktemp("gated"), GATED), "watched")
        assert dep["status"] == "ready", dep
    yield p
    p.stop()


@pytest.mark.parametrize("chatty", [False, True])
def test_a_run_stream_ends_when_its_key_is_revoked(
    platform: PlatformProcess, tmp_path: Path, chatty: bool
) -> None:
    gate = tmp_path / "gate"
    with platform.client() as admin:
        made = admin.post("/v1/keys", json={"role": "read", "project": "watched", "name": "watcher"})
        assert made.status_code == 201, made.text
        key = made.json()
        invoked = admin.post(
            "/v1/runs", json={"project": "watched", "input": {"gate": str(gate), "chatty": chatty}}
        )
        assert invoked.status_code == 202, invoked.text
        run_id = invoked.json()["run_id"]
        try:
            after: dict[str, int] = {"pings": 0, "events": 0}
            revoked = False
            with platform.client(key=key["token"]) as watcher:
                with watcher.stream("GET", f"/v1/runs/{run_id}/events") as stream:
                    assert stream.status_code == 200
                    for line in stream.iter_lines():
                        kind = (
                            "pings"
                            if line.startswith(":")
                            else "events"
                            if line.startswith("data:")
                            else None
                        )
                        if kind is None:
                            continue
                        if not revoked and (kind == "pings" or _ticks(line)):
                            assert admin.delete(f"/v1/keys/{key['id']}").status_code == 200
                            revoked = True
                            continue
                        if revoked:
                            after[kind] += 1
                            assert after["pings"] <= GRACE_PINGS and after["events"] <= GRACE_EVENTS, (
                                f"the stream outlived its key: {after}"
                            )
                assert revoked
                assert watcher.get(f"/v1/runs/{run_id}").status_code == 401  # and so does a reconnection
        finally:
            gate.write_text("go")
        assert wait_run(admin, run_id)["status"] == "succeeded"  # the run itself went on


def _ticks(line: str) -> bool:
    """Whether an SSE data line is one of the busy crew's events (it is busy by now)."""
    data: dict[str, Any] = json.loads(line[5:])
    return data.get("type") == "tool.called"
