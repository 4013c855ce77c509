"""init, env validation, and the platform commands (``up`` and ``projector rebuild`` are handed a
recording stand-in of ``crewyard.platform``, so no platform starts)."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import crewyard
from crewyard.cli import cli
from crewyard.testing.fakeapi import FakeApi, Reply


@pytest.fixture
def detect_module() -> types.ModuleType:
    import crewyard.core.detect as module

    return module


def test_init_refuses_to_overwrite_without_force(run_cli, tmp_path: Path, detect_module) -> None:
    (tmp_path / "crewyard.toml").write_text("# mine\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "crewship.toml").write_text("# theirs\n")

    refused = run_cli("init", str(tmp_path), "--framework", "python", "--entrypoint", "main:run")
    refused_crewship = run_cli("init", str(other), "--framework", "python", "--entrypoint", "main:run")
    forced = run_cli("init", str(tmp_path), "--framework", "python", "--entrypoint", "main:run", "--force")

    assert refused.exit_code == 1
    assert (
        refused.stderr
        == f"error: {tmp_path / 'crewyard.toml'} already exists (use --force to overwrite it)\n"
    )
    assert refused_crewship.exit_code == 1 and "crewyard reads it as is" in refused_crewship.stderr
    assert forced.exit_code == 0, forced.output
    assert 'entrypoint = "main:run"' in (tmp_path / "crewyard.toml").read_text()


def test_init_uses_detection_or_asks(run_cli, tmp_path: Path, detect_module, monkeypatch) -> None:
    found = types.SimpleNamespace(framework="crewai", entrypoint="crew.main:Crew", reason="imports crewai")
    monkeypatch.setattr(detect_module, "detect", lambda folder: found)
    detected = run_cli("init", str(tmp_path), "--python", "3.12")
    text = (tmp_path / "crewyard.toml").read_text()

    monkeypatch.setattr(detect_module, "detect", lambda folder: None)
    (tmp_path / "crewyard.toml").unlink()
    no_input = run_cli("init", str(tmp_path), "--no-input")
    unanswered = run_cli("init", str(tmp_path), input="")  # no terminal, nothing piped
    asked = run_cli("init", str(tmp_path), input="python\nnot an entrypoint\nmain:run\n")

    assert detected.exit_code == 0, detected.output
    assert 'framework = "crewai"' in text and 'python = "3.12"' in text
    assert "imports crewai" in detected.stdout
    assert no_input.exit_code == 1 and "pass --framework and --entrypoint" in no_input.stderr
    assert unanswered.exit_code == 1 and "Aborted" not in unanswered.output
    assert "error: no answer, nothing written: pass --framework and --entrypoint" in unanswered.stderr
    assert asked.exit_code == 0, asked.output
    assert "must look like 'package.module:attribute'" in asked.output  # the bad answer was asked again
    assert 'entrypoint = "main:run"' in (tmp_path / "crewyard.toml").read_text()


class _CtrlC(io.BytesIO):
    """A terminal's input where the user presses Ctrl-C at the first question."""

    def read(self, size: int | None = -1) -> bytes:
        if size == 0:
            return b""
        raise KeyboardInterrupt

    def readline(self, size: int | None = -1) -> bytes:
        raise KeyboardInterrupt

    def read1(self, size: int | None = -1) -> bytes:
        raise KeyboardInterrupt


def test_init_interrupted_at_a_question_exits_130_and_writes_nothing(
    tmp_path: Path, detect_module, monkeypatch
) -> None:
    monkeypatch.setattr(detect_module, "detect", lambda folder: None)

    result = CliRunner().invoke(cli, ["init", str(tmp_path)], input=_CtrlC())

    assert result.exit_code == 130, result.output
    assert "error" not in result.output and list(tmp_path.iterdir()) == []


def test_init_writes_a_langgraph_js_config_next_to_a_langgraph_json(run_cli, tmp_path: Path) -> None:
    crew = tmp_path / "graph"
    (crew / "src").mkdir(parents=True)
    (crew / "package.json").write_text('{"type": "module", "dependencies": {"@langchain/langgraph": "^1"}}')
    (crew / "src" / "graph.ts").write_text("export const graph = builder.compile();\n")
    (crew / "langgraph.json").write_text('{"graphs": {"agent": "./src/graph.ts:graph"}}')

    written = run_cli("init", str(crew), "--json")
    wrong = run_cli(
        "init", str(crew), "--force", "--framework", "langgraph-js", "--entrypoint", "src.graph:g"
    )

    assert written.exit_code == 0, written.output
    text = (crew / "crewyard.toml").read_text()
    assert 'framework = "langgraph-js"' in text and 'entrypoint = "./src/graph.ts:graph"' in text
    assert "python" not in text
    assert wrong.exit_code == 1 and "must look like './src/graph.ts:graph'" in wrong.stderr


def test_env_set_validates_names_before_sending_anything(api: FakeApi, run_cli) -> None:
    api.route("PUT", "/v1/projects/demo/env/MODEL", Reply(200, {"key": "MODEL"}))
    api.route("PUT", "/v1/projects/demo/env/DSN", Reply(200, {"key": "DSN"}))
    api.route("PUT", "/v1/projects/demo/env/SECRET", Reply(200, {"key": "SECRET"}))

    bad = run_cli("env", "set", "MODEL=gpt", "1BAD=x", "-p", "demo", "--api", api.url)
    empty = run_cli("env", "set", "=x", "-p", "demo", "--api", api.url)
    assert api.requests == []
    good = run_cli("env", "set", "MODEL=gpt", "DSN=a=b", "-p", "demo", "--api", api.url)
    prompted = run_cli("env", "set", "SECRET", "-p", "demo", "--api", api.url, input="s3cret\n")

    assert bad.exit_code == 1 and bad.stderr.startswith(
        "error: '1BAD' is not a valid environment variable name"
    )
    assert empty.exit_code == 1
    assert good.exit_code == 0 and prompted.exit_code == 0, prompted.output
    assert [(r.path.rsplit("/", 1)[1], r.json()) for r in api.requests] == [
        ("MODEL", {"value": "gpt"}),
        ("DSN", {"value": "a=b"}),
        ("SECRET", {"value": "s3cret"}),
    ]
    assert "s3cret" not in prompted.output and "gpt" not in good.output


def test_env_list_and_unset(api: FakeApi, run_cli) -> None:
    api.route(
        "GET", "/v1/projects/demo/env", Reply(200, {"env": [{"key": "OPENAI_API_KEY", "updated_at": None}]})
    )
    api.route("DELETE", "/v1/projects/demo/env/OPENAI_API_KEY", Reply(204, raw=b""))

    listed = run_cli("env", "list", "-p", "demo", "--api", api.url)
    removed = run_cli("env", "unset", "OPENAI_API_KEY", "-p", "demo", "--api", api.url)
    bad = run_cli("env", "unset", "NO-DASHES", "-p", "demo", "--api", api.url)

    assert listed.exit_code == 0 and "OPENAI_API_KEY" in listed.stdout
    assert removed.exit_code == 0 and "removed OPENAI_API_KEY from project demo" in removed.stdout
    assert bad.exit_code == 1


@pytest.fixture
def fake_platform(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stand-in crewyard.platform recording what the commands hand it."""
    seen: dict[str, Any] = {}
    module = types.ModuleType("crewyard.platform")

    async def up(settings: Any, embedded_nats: bool = True) -> None:
        seen.update(settings=settings, embedded_nats=embedded_nats)
        raise KeyboardInterrupt  # what Ctrl-C looks like once asyncio.run has cancelled the platform

    async def rebuild_projection(settings: Any) -> int:
        seen.update(settings=settings)
        return 42

    module.up = up  # type: ignore[attr-defined]
    module.rebuild_projection = rebuild_projection  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "crewyard.platform", module)
    monkeypatch.setattr(crewyard, "platform", module, raising=False)
    for var in ("CREWYARD_PORT", "CREWYARD_NATS_URL", "CREWYARD_RUNNER_CONCURRENCY", "CREWYARD_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_up_passes_settings_and_exits_quietly_on_ctrl_c(run_cli, tmp_path: Path, fake_platform) -> None:
    result = run_cli("up", "--data-dir", str(tmp_path), "--port", "9123", "--nats", "nats://10.0.0.5:4222")

    assert result.exit_code == 130
    assert result.output == ""
    settings = fake_platform["settings"]
    assert (settings.port, settings.nats_url, settings.data_dir) == (9123, "nats://10.0.0.5:4222", tmp_path)
    assert fake_platform["embedded_nats"] is False


def test_platform_commands_translate_settings_errors(run_cli, tmp_path, fake_platform, monkeypatch) -> None:
    rebuilt = run_cli("projector", "rebuild", "--data-dir", str(tmp_path))
    monkeypatch.setenv("CREWYARD_RUNNER_CONCURRENCY", "0")
    misconfigured = run_cli("up", "--data-dir", str(tmp_path))

    assert rebuilt.exit_code == 0 and "read model rebuilt from 42 events" in rebuilt.stdout
    assert misconfigured.exit_code == 1
    assert misconfigured.stderr == "error: CREWYARD_RUNNER_CONCURRENCY must be at least 1\n"
