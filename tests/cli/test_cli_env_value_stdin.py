"""``env set KEY`` (no ``=VALUE``) reads the value from stdin when stdin is not a terminal, quietly:
getpass printed its GetPassWarning ("Can not control echo on the terminal") there, and an empty
stdin ended in a bare "Aborted!" that said nothing of what to give instead."""

from __future__ import annotations

import subprocess
import sys

from crewyard.testing.fakeapi import FakeApi, Reply

CHANGED = {"project": "demo", "key": "OPENAI_API_KEY", "changed": True}


def test_a_value_piped_in_is_set_without_warnings(api: FakeApi) -> None:
    api.route("PUT", "/v1/projects/demo/env/OPENAI_API_KEY", Reply(200, CHANGED))
    command = [sys.executable, "-m", "crewyard.cli", "env", "set", "OPENAI_API_KEY", "-p", "demo"]

    done = subprocess.run([*command, "--api", api.url], input=b"sk-secret\n", capture_output=True, timeout=60)

    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    assert [r.json() for r in api.calls("PUT", "/v1/projects/demo/env/OPENAI_API_KEY")] == [
        {"value": "sk-secret"}
    ]


def test_no_value_on_stdin_says_how_to_give_one(api: FakeApi, run_cli) -> None:
    result = run_cli("env", "set", "A=1", "OPENAI_API_KEY", "-p", "demo", "--api", api.url, input="")

    assert result.exit_code == 1
    assert result.stderr == (
        "error: no value for OPENAI_API_KEY: give OPENAI_API_KEY=VALUE, or its value as a line on stdin\n"
    )
    assert api.requests == []  # nor A: nothing is set by halves
