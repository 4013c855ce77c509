"""The CLI against a real platform: what a user types, end to end."""

from __future__ import annotations

import json

from click.testing import CliRunner

from crewyard.cli import cli
from crewyard.testing.api import EXAMPLES
from crewyard.testing.platform import PlatformProcess


def _run(platform: PlatformProcess, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        [*args],
        env={"CREWYARD_API": platform.api, "CREWYARD_API_KEY": platform.admin_key, "COLUMNS": "200"},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def test_deploy_invoke_stream_artifacts_download(platform: PlatformProcess, tmp_path):
    code, out = _run(platform, "deploy", str(EXAMPLES / "hello"), "--project", "cli-hello")
    assert code == 0, out
    assert "Deployed dep_" in out
    code, out = _run(
        platform, "invoke", "--project", "cli-hello", "-i", '{"topic": "shells", "delay": 0}', "--stream"
    )
    assert code == 0, out
    for expected in ("Run started", "Tool: count_words", "Artifact: report.md", "Run completed"):
        assert expected in out, out
    code, out = _run(platform, "runs", "list", "--project", "cli-hello", "--json")
    run_id = json.loads(out)["runs"][0]["id"]
    code, out = _run(platform, "runs", "artifacts", run_id)
    assert code == 0 and "report.md" in out and "1 artifact" in out
    code, out = _run(platform, "runs", "download", run_id, "--all", "--output", str(tmp_path))
    assert code == 0, out
    assert (tmp_path / "report.md").read_text().startswith("# shells")


def test_env_and_limits_and_errors(platform: PlatformProcess):
    code, out = _run(platform, "env", "set", "TOKEN=abc123456", "--project", "cli-env")
    assert code == 0, out
    code, out = _run(platform, "env", "list", "--project", "cli-env")
    assert "TOKEN" in out and "abc123456" not in out
    code, out = _run(platform, "projects", "limit", "2", "--project", "cli-env")
    assert code == 0 and "at most 2 runs" in out
    code, out = _run(platform, "projects", "list", "--json")
    assert {"name": "cli-env", "max_concurrent_runs": 2}.items() <= next(
        p for p in json.loads(out)["projects"] if p["name"] == "cli-env"
    ).items()
    code, out = _run(platform, "runs", "get", "run_doesnotexist")
    assert code == 1 and "error:" in out and "Traceback" not in out
    code, out = _run(platform, "invoke", "--project", "cli-env", "-i", "[1, 2]")
    assert code != 0 and "Traceback" not in out
