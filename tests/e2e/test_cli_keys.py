"""``crewyard login`` / ``logout`` / ``keys`` against ``crewyard up``: the config file, keys
printed once, a narrower key refused what it may not do, revocation."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crewyard.cli import cli
from crewyard.core.access import well_formed
from crewyard.testing.platform import PlatformProcess

Run = Callable[..., Result]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Run:
    """The CLI in-process, with a config file of its own and no key from the environment."""
    for var in ("CREWYARD_API", "CREWYARD_API_KEY", "CREWYARD_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CREWYARD_CONFIG", str(tmp_path / "conf" / "config.json"))
    monkeypatch.setenv("CREWYARD_DATA_DIR", str(tmp_path / "no-platform-here"))
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, env=env, prog_name="crewyard")

    return run


def test_login_stores_the_key_and_keys_are_managed_with_it(
    platform: PlatformProcess, run_cli: Run, tmp_path: Path
):
    refused = run_cli("login", "--api", platform.api, "--key-stdin", input="cyk_" + "x" * 43 + "\n")
    assert refused.exit_code == 1 and "error:" in refused.output and "Traceback" not in refused.output
    not_a_key = run_cli("login", "--api", platform.api, "--key-stdin", input="hunter2\n")
    assert not_a_key.exit_code == 1 and "not a crewyard API key" in not_a_key.output

    done = run_cli("login", "--api", platform.api, "--key-stdin", input=platform.admin_key + "\n")
    assert done.exit_code == 0, done.output
    assert "admin on every project" in done.output
    config = tmp_path / "conf" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["api"] == platform.api and stored["keys"][platform.api] == platform.admin_key

    # No --api, no CREWYARD_API_KEY: the API and key login stored.
    made = run_cli("keys", "create", "--project", "cli-keys", "--role", "read", "--name", "ci", "--json")
    assert made.exit_code == 0, made.output
    key = json.loads(made.output)
    assert well_formed(key["token"]) and key["role"] == "read" and key["project"] == "cli-keys"

    listed = run_cli("keys", "list", "--project", "cli-keys", "--json")
    assert listed.exit_code == 0, listed.output
    assert [k["id"] for k in json.loads(listed.output)["keys"]] == [key["id"]]
    assert key["token"] not in listed.output
    table = run_cli("keys", "list")
    assert table.exit_code == 0 and key["id"] in table.output and key["token"] not in table.output

    # The read key may not manage keys: one red line, exit code 1.
    narrow = run_cli("keys", "list", env={"CREWYARD_API_KEY": key["token"]})
    assert narrow.exit_code == 1 and narrow.output.startswith("error:"), narrow.output
    wider = run_cli(
        "keys", "create", "--role", "admin", "--project", "cli-keys", env={"CREWYARD_API_KEY": key["token"]}
    )
    assert wider.exit_code == 1, wider.output

    assert run_cli("keys", "revoke", key["id"]).exit_code == 0
    gone = run_cli("runs", "list", env={"CREWYARD_API_KEY": key["token"]})
    assert gone.exit_code == 1 and "not valid" in gone.output, gone.output

    out = run_cli("logout", "--api", platform.api)
    assert out.exit_code == 0 and platform.api not in json.loads(config.read_text()).get("keys", {})


def test_keys_generate_writes_a_new_key_for_the_owner_only(run_cli: Run, tmp_path: Path):
    printed = run_cli("keys", "generate")
    assert printed.exit_code == 0 and well_formed(printed.output.strip())
    target = tmp_path / "admin.key"
    assert run_cli("keys", "generate", "-o", str(target)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and well_formed(target.read_text().strip())
    again = run_cli("keys", "generate", "-o", str(target))
    assert again.exit_code == 1 and "never replaced" in again.output
