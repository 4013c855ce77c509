"""``crewyard webhooks|triggers|schedules`` against a real platform."""

from __future__ import annotations

import json

from click.testing import CliRunner

from crewyard.cli import cli
from crewyard.testing.platform import PlatformProcess


def _run(platform: PlatformProcess, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        [*args],
        env={"CREWYARD_API": platform.api, "CREWYARD_API_KEY": platform.admin_key, "COLUMNS": "200"},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


def test_webhooks_triggers_and_schedules_from_the_cli(platform: PlatformProcess):
    assert _run(platform, "env", "set", "X=1", "-p", "cli-out")[0] == 0  # makes the project
    code, out = _run(
        platform, "webhooks", "create", "http://127.0.0.1:9/hook", "-e", "run.failed", "-p", "cli-out"
    )
    assert code == 0 and "whsec_" in out and "shown this once" in out, out
    code, out = _run(platform, "webhooks", "list", "-p", "cli-out", "--json")
    (hook,) = json.loads(out)["webhooks"]
    assert hook["events"] == ["run.failed"] and hook["secret"] is None
    code, out = _run(platform, "webhooks", "disable", hook["id"], "-p", "cli-out")
    assert code == 0 and "disabled" in out, out
    code, out = _run(platform, "webhooks", "rotate-secret", hook["id"], "-p", "cli-out")
    assert code == 0 and "whsec_" in out
    code, out = _run(platform, "webhooks", "deliveries", hook["id"])
    assert code == 0 and "No deliveries yet" in out
    code, out = _run(platform, "webhooks", "create", "ftp://nope", "-p", "cli-out")
    assert code == 1 and "error: url must start with http" in out, out
    assert _run(platform, "webhooks", "delete", hook["id"], "-p", "cli-out")[0] == 0

    code, out = _run(platform, "triggers", "create", "ci", "-p", "cli-out", "--signature-header", "X-Sig")
    assert code == 0 and "/webhooks/runs/" in out and "X-Sig secret" in out, out
    code, out = _run(platform, "triggers", "list", "-p", "cli-out", "--json")
    (trig,) = json.loads(out)["triggers"]
    assert trig["url"] is None and trig["signature_header"] == "X-Sig"
    code, out = _run(platform, "triggers", "revoke", trig["id"], "-p", "cli-out")
    assert code == 0 and "revoked" in out

    code, out = _run(
        platform, "schedules", "create", "30 6 * * *", "-z", "Asia/Tokyo", "-i", '{"a": 1}', "-p", "cli-out"
    )
    assert code == 0 and "next:" in out and "Asia/Tokyo" in out, out
    code, out = _run(platform, "schedules", "list", "-p", "cli-out", "--json")
    (sch,) = json.loads(out)["schedules"]
    assert all(t.endswith("21:30:00+00:00") for t in sch["next_fire_times"])
    code, out = _run(platform, "schedules", "pause", sch["id"], "-p", "cli-out")
    assert code == 0 and "paused" in out and "next:" not in out
    code, out = _run(platform, "schedules", "create", "every minute", "-p", "cli-out")
    assert code == 1 and "error:" in out and "five fields" in out, out
