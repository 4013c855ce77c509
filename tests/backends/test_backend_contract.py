"""The contract every execution backend keeps (process, bwrap, docker): same test bodies for all."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import pytest

from crewyard import sandboxuid

if TYPE_CHECKING:
    from backend_helpers import Runs

pytestmark = pytest.mark.timeout(120)


async def test_a_crew_prints_emits_writes_and_returns(runs: Runs) -> None:
    out = await runs.execute(runs.spec("crew:hello", input={"who": "world"}))

    assert out.status.code == 0 and not out.status.oom_killed
    logs = [m["message"] for m in out.proto if m["t"] == "log"]
    assert "hello from the crew" in logs  # the crew's stdout, moved to the log channel
    assert "a line on stderr" in out.stderr
    events = [m for m in out.proto if m["t"] == "event"]
    assert events == [
        {"t": "event", "type": "tool.called", "data": {"tool": "greet", "input": {"who": "world"}}}
    ]
    assert out.result["greeting"] == "hello world"
    assert out.result["cwd_is_artifacts"] is True
    assert out.artifacts == {
        "report.md": b"# Hello world\n",
        "relative.txt": b"the working directory is the artifacts folder\n",
    }
    if runs.backend.isolated:  # a container's uid is the host's (a rootful engine): no account's
        assert out.result["uid"] == (sandboxuid.DEFAULT if runs.kind == "docker" else 1000)


async def test_the_input_is_delivered_whatever_its_size(runs: Runs) -> None:
    # Over the kernel's 128 KiB cap for one environment variable: it must travel as a file.
    payload = {"who": "ünïcode ✓", "nested": {"list": [1, 2.5, None, True]}, "big": "x" * 300_000}
    out = await runs.execute(runs.spec("crew:echo", input=payload))

    assert out.status.code == 0
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    assert out.result["sha256"] == hashlib.sha256(canonical).hexdigest()


async def test_the_environment_is_delivered(runs: Runs) -> None:
    env = {"CREW_SETTING": "on", "OPENAI_API_KEY": "sk-test-123", "WITH_SPACES": "a b  c"}
    spec = runs.spec("crew:echo", input={"env_keys": [*env, "CREWYARD_RUN_ID", "HOME"]}, env=env)
    out = await runs.execute(spec)

    assert out.result["env"] == {**env, "CREWYARD_RUN_ID": spec.run_id, "HOME": "/tmp"}


async def test_a_raising_crew_exits_1_with_its_error(runs: Runs) -> None:
    out = await runs.execute(runs.spec("crew:failing"))

    assert out.status.code == 1 and out.status.signal is None and not out.status.oom_killed
    assert out.error is not None
    assert out.error["error_type"] == "ValueError"
    assert out.error["message"] == "ValueError: the crew failed on purpose"
    assert "about to fail" in [m.get("message") for m in out.proto]


async def test_kill_ends_the_run_and_every_child_of_it(runs: Runs) -> None:
    spec = runs.spec("crew:sleeper", input={"marker": 1000.25})
    out = await runs.execute(spec, kill_when="sleeping", grace_s=10)

    # SIGTERM ended it (a crew still there after the grace period would have been killed: 9).
    assert out.status.signal == 15, out.status
    assert out.lingering == [], "the crew's `sleep` children outlived it"
    assert not [m for m in out.proto if m["t"] in ("result", "error")]


async def test_kill_gives_the_crew_its_grace_period(runs: Runs) -> None:
    out = await runs.execute(
        runs.spec("crew:graceful", input={"marker": 1000.5}), kill_when="waiting", grace_s=10
    )

    assert out.status.code == 0, out.status
    assert out.artifacts == {"terminated.txt": b"got SIGTERM\n"}
    assert out.lingering == []
