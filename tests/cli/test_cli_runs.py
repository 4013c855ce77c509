"""invoke, runs events/list/get/cancel, artifacts and downloads — against a real loopback server."""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from crewyard.contract.runs import MAX_RUNS_PAGE
from crewyard.testing.fakeapi import DROP, FakeApi, Reply, Sse

RUN = "run_01j9zq6m8k2v3w4x5y6z7a8b9c"
RUN_PATH = f"/v1/runs/{RUN}"


def _accepted() -> Reply:
    return Reply(202, {"run_id": RUN, "status": "pending", "project": "demo"})


def _story(ending: tuple[str, dict]) -> list[tuple[int, str, dict]]:
    return [
        (1, "run.queued", {"deployment_id": "dep_1", "input": {}}),
        (2, "run.started", {"runner_id": "r1", "backend": "bwrap", "isolated": True}),
        (3, "log", {"message": "Starting crew execution"}),
        (4, "agent.started", {"agent": "Researcher", "task": "Research AI trends"}),
        (5, "tool.called", {"tool": "web_search", "input": "AI agents 2024"}),
        (6, "log", {"message": "warning from pip", "stream": "stderr"}),
        (7, "artifact", {"name": "report.md", "size": 3276, "content_type": "text/markdown", "sha256": "x"}),
        (8, *ending),
    ]


def test_invoke_stream_renders_the_run_and_exits_0(api: FakeApi, run_cli) -> None:
    api.route("POST", "/v1/runs", _accepted())
    done = ("run.completed", {"status": "succeeded", "output": {"summary": "done"}, "duration_ms": 4200})
    api.route("GET", f"{RUN_PATH}/events", Sse(_story(done), aggregate_id=RUN))

    result = run_cli("invoke", "--api", api.url, "-p", "demo", "-i", '{"topic": "AI"}', "--stream")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"▶ Run started: {RUN}" in lines
    clock = r"├─ \[\d\d:\d\d:\d\d\] "
    for expected in (
        "Starting crew execution",
        "Researcher agent starting task: Research AI trends",
        'Tool: web_search("AI agents 2024")',
        "warning from pip",
        "Artifact: report.md (3.2 KB)",
    ):
        assert any(re.fullmatch(clock + re.escape(expected), line) for line in lines), expected
    assert "✅ Run completed in 4.2s" in lines
    assert '"summary": "done"' in result.stdout
    post = api.calls("POST", "/v1/runs")[0]
    assert post.json() == {"input": {"topic": "AI"}, "project": "demo"}
    uuid.UUID(post.headers["idempotency-key"])


def test_invoke_stream_failed_run_exits_1_and_shows_trace_with_verbose(api: FakeApi, run_cli) -> None:
    api.route("POST", "/v1/runs", _accepted())
    failed = ("run.failed", {"error_message": "boom", "stack_trace": "Traceback: line 3"})
    api.route("GET", f"{RUN_PATH}/events", Sse(_story(failed), aggregate_id=RUN))

    quiet = run_cli("invoke", "dep_1", "--api", api.url, "--stream")
    verbose = run_cli("invoke", "dep_1", "--api", api.url, "--stream", "--verbose", "--timeout", "30")

    assert quiet.exit_code == 1 and verbose.exit_code == 1
    assert "❌ Run failed: boom" in quiet.stdout
    assert "Traceback: line 3" not in quiet.stdout and "--verbose" in quiet.stdout
    assert "Traceback: line 3" in verbose.stdout
    assert api.calls("POST", "/v1/runs")[-1].json() == {
        "input": {},
        "deployment_id": "dep_1",
        "timeout_s": 30.0,
    }


def test_invoke_stream_canceled_run_exits_1(api: FakeApi, run_cli) -> None:
    api.route("POST", "/v1/runs", _accepted())
    api.route("GET", f"{RUN_PATH}/events", Sse(_story(("run.canceled", {})), aggregate_id=RUN))

    result = run_cli("invoke", "-p", "demo", "--api", api.url, "--stream")

    assert result.exit_code == 1
    assert "⏹ Run canceled" in result.stdout


def test_dropped_stream_resumes_with_last_event_id_without_repeats(api: FakeApi, run_cli) -> None:
    done = ("run.completed", {"output": "plain text result", "duration_ms": 1000})
    stream = Sse(_story(done), drop_after=4, aggregate_id=RUN)
    api.route("GET", f"{RUN_PATH}/events", stream)
    api.route("GET", RUN_PATH, Reply(200, {"id": RUN, "status": "running"}))

    result = run_cli("runs", "events", RUN, "--api", api.url)

    assert result.exit_code == 0, result.output
    connects = api.calls("GET", f"{RUN_PATH}/events")
    assert len(connects) == 2
    assert "last-event-id" not in connects[0].headers
    assert connects[1].headers["last-event-id"] == "4"
    out = result.stdout
    for once in ("Run started", "Starting crew execution", "Researcher agent", "web_search", "report.md"):
        assert out.count(once) == 1, once
    assert out.rstrip().endswith("plain text result")


def test_invoke_retries_a_lost_post_with_the_same_idempotency_key(api: FakeApi, run_cli) -> None:
    api.route("POST", "/v1/runs", [DROP, _accepted()])

    result = run_cli("invoke", "-p", "demo", "--api", api.url)

    assert result.exit_code == 0, result.output
    keys = [r.headers["idempotency-key"] for r in api.calls("POST", "/v1/runs")]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert RUN in result.stdout and f"crewyard runs events {RUN}" in result.stdout


def test_invoke_rejects_input_that_is_not_a_json_object(api: FakeApi, run_cli, tmp_path: Path) -> None:
    not_object = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", "[1, 2]")
    not_json = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", "{topic: AI}")
    (tmp_path / "in.json").write_text('{"topic": "from file"}')
    api.route("POST", "/v1/runs", _accepted())
    from_file = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", f"@{tmp_path / 'in.json'}")

    assert not_object.exit_code == 1
    assert not_object.stderr == 'error: --input must be a JSON object like {"topic": "AI"}, not an array\n'
    assert not_json.exit_code == 1 and not_json.stderr.startswith("error: --input is not valid JSON")
    assert from_file.exit_code == 0
    assert [r.json()["input"] for r in api.calls("POST", "/v1/runs")] == [{"topic": "from file"}]


def test_runs_logs_prints_only_log_lines(api: FakeApi, run_cli) -> None:
    api.route(
        "GET", f"{RUN_PATH}/events", Sse(_story(("run.failed", {"error_message": "x"})), aggregate_id=RUN)
    )

    result = run_cli("runs", "logs", RUN, "--api", api.url)

    assert result.exit_code == 1  # the run failed: as runs events (README: "Exit codes still say…")
    assert result.stdout.splitlines() == ["Starting crew execution", "warning from pip"]


def test_runs_logs_exit_code_says_how_the_run_ended(api: FakeApi, run_cli) -> None:
    codes = {}
    for ending, data in (("run.completed", {"output": "ok"}), ("run.canceled", {}), ("run.failed", {})):
        api.route("GET", f"{RUN_PATH}/events", Sse(_story((ending, data)), aggregate_id=RUN))
        codes[ending] = (
            run_cli("runs", "logs", RUN, "--api", api.url).exit_code,
            run_cli("runs", "logs", RUN, "--api", api.url, "--json").exit_code,
        )

    assert codes == {"run.completed": (0, 0), "run.canceled": (1, 1), "run.failed": (1, 1)}


def test_runs_list_table_and_json(api: FakeApi, run_cli) -> None:
    page = {
        "runs": [
            {
                "id": RUN,
                "project": "demo",
                "status": "succeeded",
                "created_at": "2024-01-15T10:30:00Z",
                "duration_ms": 4200,
            },
            {"id": "run_2", "project": "demo", "status": "running", "created_at": "2024-01-15T10:31:00Z"},
        ],
        "next_cursor": "c2",
    }
    api.route("GET", "/v1/runs", Reply(200, page))

    table = run_cli(
        "runs", "list", "--api", api.url, "--project", "demo", "--status", "succeeded", "--limit", "2"
    )
    raw = run_cli("runs", "list", "--api", api.url, "--json")

    assert table.exit_code == 0, table.output
    assert RUN in table.stdout and "succeeded" in table.stdout and "4.2s" in table.stdout
    # The next page is the same listing, on from this one.
    more = " ".join(table.stdout.split("more:", 1)[1].split())
    assert more == "crewyard runs list --project demo --status succeeded --limit 2 --cursor c2", more
    assert api.requests[0].query == {"project": ["demo"], "status": ["succeeded"], "limit": ["2"]}
    by_version = run_cli("runs", "list", "--api", api.url, "--deployment", "ver_1", "--json")
    assert by_version.exit_code == 0 and api.requests[-1].query == {
        "deployment_id": ["ver_1"],
        "limit": ["20"],
    }
    assert raw.exit_code == 0 and '"next_cursor": "c2"' in raw.stdout

    # The largest page the API gives, and no larger: a bigger --limit is the CLI's own error.
    most = run_cli("runs", "list", "--api", api.url, "--limit", str(MAX_RUNS_PAGE))
    assert most.exit_code == 0 and api.requests[-1].query == {"limit": [str(MAX_RUNS_PAGE)]}
    sent = len(api.requests)
    over = run_cli("runs", "list", "--api", api.url, "--limit", str(MAX_RUNS_PAGE + 1))
    assert over.exit_code == 2 and f"1<=x<={MAX_RUNS_PAGE}" in over.output and len(api.requests) == sent


def test_runs_get_and_cancel(api: FakeApi, run_cli) -> None:
    api.route(
        "GET",
        RUN_PATH,
        Reply(
            200,
            {
                "id": RUN,
                "project": "demo",
                "status": "failed",
                "input": {"a": 1},
                "output": None,
                "error_message": "it broke",
                "duration_ms": 61000,
            },
        ),
    )
    api.route("POST", f"{RUN_PATH}/cancel", Reply(200, {"success": True, "status": "canceled"}))

    got = run_cli("runs", "get", RUN, "--api", api.url)
    canceled = run_cli("runs", "cancel", RUN, "--api", api.url)

    assert got.exit_code == 0 and "it broke" in got.stdout and "1m 1s" in got.stdout
    assert canceled.exit_code == 0 and f"⏹ {RUN} canceled" in canceled.stdout


def test_artifacts_listing_format(api: FakeApi, run_cli) -> None:
    artifacts = [
        {
            "name": "report.md",
            "size": 3276,
            "content_type": "text/markdown",
            "sha256": "a",
            "created_at": "x",
        },
        {"name": "data/results.json", "size": 45800, "content_type": "application/json", "sha256": "b"},
        {"name": "chart.png", "size": 2020, "content_type": "image/png", "sha256": "c"},
    ]
    api.route("GET", f"{RUN_PATH}/artifacts", Reply(200, {"artifacts": artifacts}))

    result = run_cli("runs", "artifacts", RUN, "--api", api.url)

    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"Artifacts for {RUN}:",
        "  report.md           3.2 KB  text/markdown",
        "  data/results.json  44.7 KB  application/json",
        "  chart.png           2.0 KB  image/png",
        "3 artifacts, 49.9 KB total",
    ]


def test_download_all_keeps_subfolders_and_checks_sha256(api: FakeApi, run_cli, tmp_path: Path) -> None:
    files = {"report.md": b"# Report\n", "data/results.json": b'{"ok": true}'}
    listing = [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for n, b in files.items()]
    api.route("GET", f"{RUN_PATH}/artifacts", Reply(200, {"artifacts": listing}))
    for name, content in files.items():
        api.route("GET", f"{RUN_PATH}/artifacts/{name}", Reply(200, raw=content, content_type="text/plain"))

    result = run_cli("runs", "download", RUN, "--all", "--output", str(tmp_path / "out"), "--api", api.url)

    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "report.md").read_bytes() == files["report.md"]
    assert (tmp_path / "out" / "data" / "results.json").read_bytes() == files["data/results.json"]
    assert not list((tmp_path / "out").rglob("*.part"))


def test_download_refuses_names_that_escape_the_output_folder(api: FakeApi, run_cli, tmp_path: Path) -> None:
    listing = [{"name": "ok.txt", "size": 1}, {"name": "../../evil.sh", "size": 1}]
    api.route("GET", f"{RUN_PATH}/artifacts", Reply(200, {"artifacts": listing}))

    everything = run_cli("runs", "download", RUN, "--all", "-o", str(tmp_path / "out"), "--api", api.url)
    absolute = run_cli("runs", "download", RUN, "/etc/passwd", "-o", str(tmp_path / "out"), "--api", api.url)

    for result in (everything, absolute):
        assert result.exit_code == 1
        assert result.stderr.startswith("error: refusing to write artifact")
        assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    assert not [r for r in api.requests if r.path.startswith(f"{RUN_PATH}/artifacts/")]


def test_download_detects_a_corrupted_file(api: FakeApi, run_cli, tmp_path: Path) -> None:
    api.route(
        "GET", f"{RUN_PATH}/artifacts", Reply(200, {"artifacts": [{"name": "a.txt", "sha256": "0" * 64}]})
    )
    api.route("GET", f"{RUN_PATH}/artifacts/a.txt", Reply(200, raw=b"tampered", content_type="text/plain"))

    result = run_cli("runs", "download", RUN, "a.txt", "-o", str(tmp_path), "--api", api.url)

    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_stream_closed_without_a_terminal_event_ends_from_the_run_record(api: FakeApi, run_cli) -> None:
    started = [(1, "run.started", {"backend": "docker", "isolated": True}), (2, "log", {"message": "hi"})]
    api.route("GET", f"{RUN_PATH}/events", Sse(started, aggregate_id=RUN))
    api.route(
        "GET", RUN_PATH, Reply(200, {"id": RUN, "status": "succeeded", "output": "42", "duration_ms": 900})
    )

    result = run_cli("runs", "events", RUN, "--api", api.url)

    assert result.exit_code == 0, result.output
    assert "✅ Run completed in 0.9s" in result.stdout and result.stdout.rstrip().endswith("42")
    assert len(api.calls("GET", f"{RUN_PATH}/events")) == 1
