"""deploy (pack, upload, build log), multi-deployment files, rollback and deployments list."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply, Sse


def _crew(root: Path, config: str) -> Path:
    folder = root / "My Crew"
    (folder / "tests").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "crewyard.toml").write_text(config)
    (folder / "main.py").write_text("def run(inputs):\n    return inputs\n")
    (folder / "tests" / "test_main.py").write_text("def test(): pass\n")
    (folder / "debug.log").write_text("noise\n")
    (folder / "data" / "keep.txt").write_text("kept\n")
    return folder


def _build(dep_id: str, ending: tuple[str, dict]) -> Sse:
    return Sse(
        [
            (1, "deployment.build.started", {"builder_id": "b1", "backend": "venv"}),
            (2, "deployment.build.log", {"line": "Installing dependencies"}),
            (3, "deployment.build.log", {"line": "Successfully installed crew"}),
            (4, *ending),
        ],
        aggregate_id=dep_id,
    )


def _names(archive: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name for m in tar.getmembers()}


SINGLE = """
[deployment]
framework = "python"
entrypoint = "main:run"
colour = "blue"

[build]
exclude = ["tests", "*.log"]
"""


def test_deploy_packs_honouring_exclude_and_shows_the_build_log(
    api: FakeApi, run_cli, tmp_path: Path
) -> None:
    folder = _crew(tmp_path, SINGLE)
    api.route(
        "POST",
        "/v1/projects/my-crew/deployments",
        Reply(202, {"deployment_id": "dep_1", "status": "building", "project": "my-crew"}),
    )
    api.route(
        "GET", "/v1/deployments/dep_1/build-log", _build("dep_1", ("deployment.ready", {"duration_ms": 1500}))
    )

    result = run_cli("deploy", str(folder), "--api", api.url)

    assert result.exit_code == 0, result.output
    upload = api.calls("POST", "/v1/projects/my-crew/deployments")[0]
    assert upload.headers["content-type"] == "application/gzip"
    assert int(upload.headers["content-length"]) == len(upload.body)
    assert upload.query == {}
    assert _names(upload.body) == {"crewyard.toml", "main.py", "data/keep.txt"}
    lines = result.stdout.splitlines()
    assert "warning: crewyard.toml: unknown key 'deployment.colour' ignored" in lines
    assert "  Installing dependencies" in lines and "  Successfully installed crew" in lines
    assert any(
        line.startswith("✓ Deployed dep_1 (project my-crew)") and "built in 1.5s" in line for line in lines
    )


def test_failed_build_exits_1_with_the_reason(api: FakeApi, run_cli, tmp_path: Path) -> None:
    folder = _crew(tmp_path, SINGLE)
    api.route(
        "POST",
        "/v1/projects/research/deployments",
        Reply(202, {"deployment_id": "dep_2", "status": "building"}),
    )
    failed = ("deployment.failed", {"error_message": "pip could not find crewai==99"})
    api.route("GET", "/v1/deployments/dep_2/build-log", _build("dep_2", failed))

    result = run_cli("deploy", str(folder), "--project", "research", "--api", api.url)

    assert result.exit_code == 1
    assert "✗ Build of dep_2 failed: pip could not find crewai==99" in result.stdout


def test_no_wait_returns_after_the_upload(api: FakeApi, run_cli, tmp_path: Path) -> None:
    folder = _crew(tmp_path, SINGLE)
    api.route(
        "POST",
        "/v1/projects/my-crew/deployments",
        Reply(202, {"deployment_id": "dep_3", "status": "building"}),
    )

    result = run_cli("deploy", str(folder), "--no-wait", "--api", api.url)

    assert result.exit_code == 0
    assert "crewyard deployments logs dep_3" in result.stdout
    assert not api.calls("GET", "/v1/deployments/dep_3/build-log")


MULTI = """
[build]
exclude = ["tests"]

[deployments.support-agent]
entrypoint = "main:run"

[deployments.research-agent]
entrypoint = "main:run"
"""


def test_several_deployments_are_deployed_in_turn_each_as_its_own_project(
    api: FakeApi, run_cli, tmp_path: Path
) -> None:
    folder = _crew(tmp_path, MULTI)
    for name, dep in (("support-agent", "dep_s"), ("research-agent", "dep_r")):
        api.route("POST", f"/v1/projects/{name}/deployments", Reply(202, {"deployment_id": dep}))
    api.route(
        "GET", "/v1/deployments/dep_s/build-log", _build("dep_s", ("deployment.ready", {"cached": True}))
    )
    api.route(
        "GET",
        "/v1/deployments/dep_r/build-log",
        _build("dep_r", ("deployment.failed", {"error_message": "x"})),
    )

    both = run_cli("deploy", str(folder), "--api", api.url)
    one = run_cli("deploy", str(folder), "--name", "support-agent", "--project", "shared", "--api", api.url)

    assert both.exit_code == 1
    assert [r.query for r in api.requests if r.method == "POST"][:2] == [
        {"name": ["support-agent"]},
        {"name": ["research-agent"]},
    ]
    assert (
        "✓ Deployed dep_s (project support-agent)" in both.stdout and "reused a cached build" in both.stdout
    )
    assert "1 of 2 deployments failed: research-agent" in both.stdout
    assert one.exit_code == 1  # /v1/projects/shared/... has no route: the 404 is reported cleanly
    assert one.stderr == "error: no route /v1/projects/shared/deployments\n"


def test_bad_config_is_a_clean_error(api: FakeApi, run_cli, tmp_path: Path) -> None:
    folder = _crew(tmp_path, "[deployment\nentrypoint = 1")
    empty = tmp_path / "empty"
    empty.mkdir()

    broken = run_cli("deploy", str(folder), "--api", api.url)
    missing = run_cli("deploy", str(empty), "--api", api.url)

    assert broken.exit_code == 1 and broken.stderr.startswith("error: crewyard.toml: not valid TOML")
    assert missing.exit_code == 1 and missing.stderr.startswith(
        "error: no crewyard.toml, crewship.toml or langgraph.json in"
    )
    assert api.requests == []


def test_rollback_and_deployments_list(api: FakeApi, run_cli) -> None:
    api.route(
        "POST", "/v1/projects/research/rollback", Reply(200, {"deployment_id": "dep_old", "current": True})
    )
    listing = {
        "deployments": [
            {
                "deployment_id": "dep_new",
                "status": "failed",
                "created_at": "2024-01-15T10:30:00Z",
                "current": False,
                "error_message": "build broke",
            },
            {
                "deployment_id": "dep_old",
                "status": "ready",
                "created_at": "2024-01-14T10:30:00Z",
                "current": True,
                "cached": True,
            },
        ]
    }
    api.route("GET", "/v1/projects/research/deployments", Reply(200, listing))

    rolled = run_cli("deploy", "--rollback", "dep_old", "--project", "research", "--api", api.url)
    listed = run_cli("deployments", "list", "--project", "research", "--api", api.url)

    assert rolled.exit_code == 0
    assert rolled.stdout.strip() == "✓ dep_old is the current deployment of research again"
    assert api.calls("POST", "/v1/projects/research/rollback")[0].json() == {"deployment_id": "dep_old"}
    assert listed.exit_code == 0
    current = next(line for line in listed.stdout.splitlines() if "dep_old" in line)
    assert current.lstrip().startswith("●")
    assert "build broke" in listed.stdout


def test_build_log_closed_early_ends_from_the_deployment_record(api: FakeApi, run_cli) -> None:
    api.route(
        "GET", "/v1/deployments/dep_9/build-log", Sse([(1, "deployment.build.log", {"line": "step 1"})])
    )
    api.route(
        "GET",
        "/v1/deployments/dep_9",
        Reply(200, {"deployment_id": "dep_9", "status": "failed", "error_message": "out of disk"}),
    )

    result = run_cli("deployments", "logs", "dep_9", "--api", api.url)

    assert result.exit_code == 1
    assert "  step 1" in result.stdout and "failed: out of disk" in result.stdout


@pytest.mark.parametrize("body", [b"", b"{}", b'{"status": "ready", "current": true}'])
def test_an_answer_without_a_deployment_is_not_a_rollback(api: FakeApi, run_cli, body: bytes) -> None:
    """Every field of a deployment has a default: {} printed '✓ dep_old is the current deployment
    of research again' and exited 0."""
    api.route("POST", "/v1/projects/research/rollback", Reply(200, raw=body))

    rolled = run_cli("deploy", "--rollback", "dep_old", "--project", "research", "--api", api.url)

    assert rolled.exit_code == 1, rolled.output
    assert rolled.stdout == ""
    assert rolled.stderr == (
        "error: the API answered POST /v1/projects/research/rollback with no deployment (no id): is this"
        " a crewyard API's address?\n"
    )


def test_a_listing_of_deployments_without_ids_is_an_error(api: FakeApi, run_cli) -> None:
    """A listing of {} printed a table row of blanks (and --json the blanks filled in)."""
    listing = {"deployments": [{"deployment_id": "dep_1", "status": "ready"}, {}]}
    api.route("GET", "/v1/projects/research/deployments", Reply(200, listing))

    for extra in ([], ["--json"]):
        listed = run_cli("deployments", "list", "--project", "research", *extra, "--api", api.url)

        assert listed.exit_code == 1, listed.output
        assert listed.stdout == ""
        assert "with no deployment (no id)" in listed.stderr and "Traceback" not in listed.output
