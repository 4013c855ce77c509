"""`crewyard consumers` against a running platform: issue, use, list, revoke."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner
from nats.aio.client import RawCredentials

from crewyard.cli import cli
from crewyard.testing.api import deploy
from crewyard.testing.platform import PlatformProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.timeout(300)


def _cli(platform: PlatformProcess, *args: str) -> str:
    # A terminal wide enough for the table: the narrow one some runners set would cut ids short.
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, [*args, "--data-dir", str(platform.data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


async def _first_events(platform: PlatformProcess, bundle: dict, count: int) -> list[str]:
    nc = await nats.connect(
        platform.nats_url,
        user_credentials=RawCredentials(bundle["creds"]),
        inbox_prefix=bundle["inbox_prefix"],
    )
    try:
        psub = await nc.jetstream().pull_subscribe_bind(bundle["durable"], stream=bundle["stream"])
        msgs = await psub.fetch(count, timeout=10)
        return [json.loads(m.data)["type"] for m in msgs]
    finally:
        await nc.close()


def test_issue_use_list_and_revoke_consumer_credentials(platform: PlatformProcess, api, tmp_path: Path):
    deploy(api, EXAMPLES / "hello", "watched-cli")
    out = tmp_path / "creds.json"
    _cli(platform, "consumers", "create", "--project", "watched-cli", "--name", "analytics", "-o", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bundle = json.loads(out.read_text())
    types = asyncio.run(_first_events(platform, bundle, 2))
    assert types[:2] == ["project.created", "deployment.created"]
    assert bundle["consumer_id"] in _cli(platform, "consumers", "list")
    listed = json.loads(_cli(platform, "consumers", "list", "--json"))["consumers"]
    mine = next(c for c in listed if c["consumer_id"] == bundle["consumer_id"])
    assert (mine["project"], mine["name"], mine["revoked_at"]) == ("watched-cli", "analytics", None)
    assert "creds" not in mine  # shown once, at creation, and only in the file
    revoked = json.loads(_cli(platform, "consumers", "revoke", bundle["consumer_id"], "--json"))
    assert revoked == {"consumer_id": bundle["consumer_id"], "revoked": True}
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        asyncio.run(
            nats.connect(
                platform.nats_url,
                user_credentials=RawCredentials(bundle["creds"]),
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        )
    unknown = "con_" + "0" * 26
    failed = CliRunner().invoke(cli, ["consumers", "revoke", unknown, "--data-dir", str(platform.data_dir)])
    assert failed.exit_code == 1 and f"no consumer {unknown}" in failed.output
