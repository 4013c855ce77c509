"""``consumers create -o``: the output file is checked (and made) before any credentials are
issued, like ``keys generate -o``: a consumer nobody holds the credentials of must never exist."""

from __future__ import annotations

import importlib
import json
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest

from crewyard.cli import CliError

consumers_cli = importlib.import_module("crewyard.cli.consumers")  # the module, not its click group


class Issued(msgspec.Struct):
    consumer_id: str
    creds: str


@pytest.fixture
def issued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Stands in for the NATS side (the gateway's user and the issuer keys): records what is issued."""
    made: list[tuple[str, str]] = []

    class Consumers:
        async def create(self, project: str, name: str, expires_at: Any = None) -> Issued:
            if name == "refused":
                raise CliError("no issuer keys here")
            made.append((project, name))
            return Issued("con_01j9zq6m8k2v3w4x5y6z7a8b9c", "-----BEGIN NATS USER JWT-----")

    async def with_consumers(settings: Any, work: Any) -> Any:
        return await work(Consumers())

    monkeypatch.setattr(consumers_cli, "_with_consumers", with_consumers)
    return made


def test_an_output_that_cannot_be_written_is_refused_before_anything_is_issued(
    run_cli, tmp_path: Path, issued: list[tuple[str, str]]
) -> None:
    existing = tmp_path / "existing.json"
    existing.write_text("keep me\n")
    missing_folder = tmp_path / "nonexistent" / "c.json"
    base = ("consumers", "create", "-p", "research", "--name", "analytics", "--data-dir", str(tmp_path))

    into_missing = run_cli(*base, "-o", str(missing_folder))
    over_existing = run_cli(*base, "-o", str(existing))

    assert into_missing.exit_code == 1
    assert into_missing.stderr == (
        f"error: cannot write {missing_folder}: No such file or directory"
        " (an existing file is never replaced)\n"
    )
    assert over_existing.exit_code == 1
    assert over_existing.stderr == (
        f"error: cannot write {existing}: File exists (an existing file is never replaced)\n"
    )
    assert existing.read_text() == "keep me\n"
    assert issued == []


def test_credentials_go_to_a_new_private_file_and_a_failed_issue_leaves_none(
    run_cli, tmp_path: Path, issued: list[tuple[str, str]]
) -> None:
    base = ("consumers", "create", "-p", "research", "--data-dir", str(tmp_path))

    made = run_cli(*base, "--name", "analytics", "-o", str(tmp_path / "c.json"))
    refused = run_cli(*base, "--name", "refused", "-o", str(tmp_path / "r.json"))

    assert made.exit_code == 0, made.output
    assert json.loads((tmp_path / "c.json").read_text())["consumer_id"] == "con_01j9zq6m8k2v3w4x5y6z7a8b9c"
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600
    assert refused.exit_code == 1 and refused.stderr == "error: no issuer keys here\n"
    assert not (tmp_path / "r.json").exists()
    assert issued == [("research", "analytics")]
