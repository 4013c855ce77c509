"""The gateway's /metrics covers HTTP, runs, builds, consumer and read model lag and SSE clients;
a gateway that shuts down ends its SSE streams with a retry hint, so clients resume elsewhere."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from crewyard.testing.api import deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

HELLO = "def run(inputs):\n    return {'hello': inputs.get('name', 'world')}\n"
GATED = """
import pathlib, time

def run(inputs):
    gate = pathlib.Path(inputs["gate"])
    while not gate.exists():
        time.sleep(0.05)
    return {}
"""


def _value(text: str, name: str, **labels: str) -> float | None:
    """A sample's value in Prometheus text (labels given must match; others may be there)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_cover_http_runs_builds_lag_and_streams(platform: PlatformProcess, tmp_path: Path) -> None:
    with platform.client(timeout=30) as api:
        dep = deploy(api, write_crew(tmp_path / "hello", HELLO), "metrics")
        run_id = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"]
        assert wait_run(api, run_id)["status"] == "succeeded"
        api.get("/v1/runs/run_does_not_exist")
        answer = api.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert _value(text, "crewyard_runs_finished_total", status="succeeded", backend="process") == 1
    assert (_value(text, "crewyard_run_duration_seconds_count", status="succeeded") or 0) >= 1
    assert (_value(text, "crewyard_run_start_latency_seconds_count") or 0) >= 1
    assert _value(text, "crewyard_runs", status="succeeded", backend="process") == 1
    assert _value(text, "crewyard_builds_total", status="ready") == 1
    assert _value(text, "crewyard_consumer_pending_messages", consumer="runner") == 0
    assert _value(text, "crewyard_consumer_pending_messages", consumer="builder") == 0
    head = _value(text, "crewyard_stream_last_sequence")
    assert head is not None and head > 0
    assert _value(text, "crewyard_projector_position") is not None
    assert _value(text, "crewyard_requests_total", path="/v1/runs/{run_id}", status_code="404") == 1
    assert _value(text, "crewyard_request_duration_seconds_count", path="/v1/runs", method="POST") == 1
    assert "crewyard_sse_clients" in text and "crewyard_events_set_aside" in text


def test_a_gateway_that_shuts_down_ends_sse_streams_with_a_retry_hint(tmp_path: Path) -> None:
    platform = PlatformProcess(tmp_path / "data").start()
    lines: list[str] = []
    try:
        with platform.client(timeout=30) as api:
            dep = deploy(api, write_crew(tmp_path / "gated", GATED), "closing")
            body = {"deployment_id": dep["deployment_id"], "input": {"gate": str(tmp_path / "never")}}
            run_id = api.post("/v1/runs", json=body).json()["run_id"]

            def follow() -> None:
                with (
                    platform.client(timeout=120) as sse,
                    sse.stream("GET", f"/v1/runs/{run_id}/events") as resp,
                ):
                    for line in resp.iter_lines():
                        lines.append(line)

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            deadline = time.monotonic() + 60
            while "event: run.started" not in lines and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "event: run.started" in lines
            platform.stop()
            reader.join(60)
            assert not reader.is_alive()
    finally:
        platform.stop()
    assert "retry: 1000" in lines, lines[-5:]
    assert not any(line.startswith("event: run.canceled") for line in lines)
