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
    assert (
        result.stderr
        == "error: no value for OPENAI_API_KEY: give OPENAI_API_KEY=VALUE, or its value on stdin\n"
    )
    assert api.requests == []  # nor A: nothing is set by halves


PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIBVAIBADANBgkqhkiG9w0BAQEFAASCAT4wggE6AgEAAkEA\n-----END PRIVATE KEY-----"
)


def test_a_value_of_many_lines_is_piped_whole(api: FakeApi, run_cli) -> None:
    api.route("PUT", "/v1/projects/demo/env/PRIVATE_KEY", Reply(200, {**CHANGED, "key": "PRIVATE_KEY"}))

    result = run_cli("env", "set", "PRIVATE_KEY", "-p", "demo", "--api", api.url, input=PEM + "\n")

    assert result.exit_code == 0, result.output
    assert [r.json() for r in api.calls("PUT", "/v1/projects/demo/env/PRIVATE_KEY")] == [{"value": PEM}]


def test_only_one_key_may_take_its_value_from_stdin(api: FakeApi, run_cli) -> None:
    result = run_cli("env", "set", "A", "B", "-p", "demo", "--api", api.url, input="one\ntwo\n")

    assert result.exit_code == 1
    assert "only one KEY may take its value from stdin" in result.stderr
    assert api.requests == []


def test_a_value_that_is_not_utf8_is_named_by_its_key_and_never_shown(api: FakeApi, run_cli) -> None:
    secret = "sk-very-secret-value-1234567890"
    result = run_cli("env", "set", "A=1", f"OPENAI_API_KEY={secret}\udcffabc", "-p", "demo", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == (
        "error: the value of OPENAI_API_KEY is not UTF-8 text (an argument in another encoding?)\n"
    )
    assert "secret" not in result.output and api.requests == []  # nor A: nothing is set by halves
