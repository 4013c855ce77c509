"""Failures are one red line and exit code 1, never a traceback; the SSE reader's parsing rules."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from crewyard.client import SseMessage, SseParser
from crewyard.testing.fakeapi import FakeApi, Reply, Sse

RUN = "run_01j9zq6m8k2v3w4x5y6z7a8b9c"


def test_api_error_body_becomes_one_clean_line(api: FakeApi, run_cli) -> None:
    error = {"error": {"code": "bad_request", "message": "Cannot cancel run with status: succeeded"}}
    api.route("POST", f"/v1/runs/{RUN}/cancel", Reply(400, error))

    result = run_cli("runs", "cancel", RUN, "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == "error: Cannot cancel run with status: succeeded\n"
    assert result.stdout == ""


def test_error_without_an_error_body_still_reads_well(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/runs", Reply(502, raw=b"Bad Gateway\nupstream down", content_type="text/plain"))

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == "error: HTTP 502 from GET /v1/runs: Bad Gateway\n"


def test_connection_refused_is_a_clean_message(dead_url: str, run_cli) -> None:
    expected = f"error: cannot reach the crewyard API at {dead_url} — is `crewyard up` running?\n"
    for args in (
        ("runs", "list"),
        ("runs", "events", RUN),
        ("invoke", "-p", "demo"),  # retried with its idempotency key, then the same message
        ("env", "list", "-p", "demo"),
    ):
        result = run_cli(*args, "--api", dead_url)
        assert result.exit_code == 1, args
        assert result.stderr == expected, args
        assert "Traceback" not in result.output


def test_bad_api_url_and_missing_project(run_cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no crew config here, so no project can be implied
    bad_url = run_cli("runs", "list", "--api", "localhost:8080")
    no_project = run_cli("env", "list")

    assert bad_url.exit_code == 1 and bad_url.stderr.startswith("error: invalid API URL 'localhost:8080'")
    assert no_project.exit_code == 1
    assert no_project.stderr == "error: no project given: pass --project NAME or set CREWYARD_PROJECT\n"


def test_unexpected_answers_never_show_a_traceback(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/runs", Reply(200, {"runs": "not a list"}))

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: the API answered GET /v1/runs with something this client")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("body", [b"", b"{}", b'{"status": "pending"}'])
def test_an_answer_without_a_run_is_not_a_pending_run(api: FakeApi, run_cli, body: bytes) -> None:
    """A proxy or another service at --api answering 200 with no run printed "Run  is pending" and
    exited 0 (and with --stream followed /v1/runs//events)."""
    api.route("POST", "/v1/runs", Reply(200, raw=body))

    result = run_cli("invoke", "--project", "demo", "--api", api.url)

    assert result.exit_code == 1, result.output
    assert "answered POST /v1/runs with no run" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("path", "command"),
    [
        ("/v1/keys", ["keys", "list"]),
        ("/v1/projects/demo/schedules", ["schedules", "list", "-p", "demo"]),
        ("/v1/projects/demo/triggers", ["triggers", "list", "-p", "demo"]),
        ("/v1/projects/demo/webhooks", ["webhooks", "list", "-p", "demo"]),
    ],
)
def test_answers_the_contract_does_not_fit_are_one_line(api: FakeApi, run_cli, path: str, command: list[str]):
    api.route("GET", path, Reply(200, {"keys": 1, "schedules": 1, "triggers": 1, "webhooks": 1}))

    result = run_cli(*command, "--api", api.url)

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: the API answered with something unexpected: ")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.output


def _ctrl_c_once_printed(*texts: str) -> None:
    """Ctrl-C as the client feels it, once the CLI printed ``texts`` (at most 10 s on): it has
    handled the events sent and waits for more. SIGINT to the main thread, where the CLI is
    blocked reading (sent to the process, the kernel may hand it to this server thread instead,
    and the blocked read would not notice until the server lets go)."""
    stdout = sys.stdout  # CliRunner's while it runs the CLI: it keeps what was written

    def printed() -> str:
        return bytes(stdout.buffer.getvalue()).decode(errors="replace")

    deadline = time.monotonic() + 10
    while not all(text in printed() for text in texts) and time.monotonic() < deadline:
        time.sleep(0.01)
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


@pytest.mark.parametrize("command", ["events", "logs"])
def test_ctrl_c_while_following_exits_130_and_says_how_to_resume(api: FakeApi, run_cli, command: str) -> None:
    released = threading.Event()

    def interrupt_the_client() -> None:
        # Once the client is blocked waiting for more events: what Ctrl-C interrupts in real life.
        _ctrl_c_once_printed("working")
        released.wait(5)

    events = [
        (1, "run.started", {"backend": "process", "isolated": False}),
        (2, "log", {"message": "working"}),
    ]
    api.route("GET", f"/v1/runs/{RUN}/events", Sse(events, aggregate_id=RUN, then=interrupt_the_client))
    try:
        result = run_cli("runs", command, RUN, "--api", api.url)
    finally:
        released.set()

    assert result.exit_code == 130
    assert "working" in result.stdout
    assert command == "logs" or "not isolated" in result.stdout  # (logs show the log lines only)
    assert f"Resume with: crewyard runs {command} {RUN}" in result.stdout


def test_events_tail_prints_one_line_per_event(api: FakeApi, run_cli) -> None:
    released = threading.Event()

    def interrupt_the_client() -> None:
        _ctrl_c_once_printed("Run failed: boom")
        released.wait(5)

    events = [
        (7, "deployment.ready", {"cached": True}),
        (8, "tool.called", {"tool": "search", "input": {"query": "AI", "k": 3}}),
        (9, "run.failed", {"error_message": "boom"}),
    ]
    api.route("GET", "/v1/projects/demo/events", Sse(events, aggregate_id=RUN, then=interrupt_the_client))
    try:
        result = run_cli("events", "tail", "-p", "demo", "--after", "6", "--api", api.url)
    finally:
        released.set()

    assert result.exit_code == 130
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].endswith(f'{RUN}  tool.called  Tool: search(query="AI", k=3)')
    assert lines[2].endswith("run.failed  Run failed: boom")
    assert api.requests[0].headers["last-event-id"] == "6"


def _parse(text: str) -> list[SseMessage]:
    parser = SseParser()
    return [m for line in text.split("\n") if (m := parser.feed(line)) is not None]


def test_sse_parser_follows_the_format() -> None:
    stream = (
        ": keep-alive\n\n"
        'id: 1\nevent: log\ndata: {"a":\ndata:  1}\n\n'
        "id: 2\n\n"  # an id with no data dispatches nothing
        "data:no space\n\n"
        "retry: 1500\n"
    )
    messages = _parse(stream)

    assert messages == [
        SseMessage(event="log", data='{"a":\n 1}', id="1"),
        SseMessage(event="message", data="no space", id=None),
    ]
    parser = SseParser()
    parser.feed("retry: 1500")
    assert parser.retry_ms == 1500
