"""Input the CLI cannot send is one clear error naming the option (exit 1, no request), never
``unexpected <Error>``; a reader that closes the pipe early ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crewyard.testing.fakeapi import FakeApi, Sse

RUN = "run_01j9zq6m8k2v3w4x5y6z7a8b9c"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "inf"], "--timeout must be a number of seconds, not inf"),
        (["--timeout", "nan"], "--timeout must be a number of seconds, not nan"),
        (["-i", '{"a": NaN}'], "--input is not valid JSON: NaN is not a JSON number"),
        (["-i", '{"a": -Infinity}'], "--input is not valid JSON: -Infinity is not a JSON number"),
        (["-i", '{"a": 1e999}'], "--input is not valid JSON: the number 1e999 is too large"),
        (
            ["-i", '{"t": "\\ud800"}'],
            "--input is not valid JSON: it has an unpaired surrogate (\\ud800-\\udfff)",
        ),
        (["-i", '{"a": ' * 5000 + "1" + "}" * 5000], "--input is nested too deeply"),
    ],
)
def test_invoke_input_the_api_cannot_take_is_a_clear_error(
    api: FakeApi, run_cli, args: list[str], message: str
) -> None:
    result = run_cli("invoke", "-p", "demo", "--api", api.url, *args)

    assert result.exit_code == 1
    assert result.stderr == f"error: {message}\n"
    assert api.requests == []


def test_an_input_file_that_is_not_utf8_names_the_option(api: FakeApi, run_cli, tmp_path: Path) -> None:
    (tmp_path / "in.json").write_bytes(b'{"a": "\xff"}')
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)

    latin1 = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", f"@{tmp_path / 'in.json'}")
    piped = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", "-", input=b'{"a": "\xff"}')
    deep = run_cli("invoke", "-p", "demo", "--api", api.url, "-i", f"@{tmp_path / 'deep.json'}")

    assert latin1.exit_code == 1
    assert (
        latin1.stderr
        == f"error: the --input file {str(tmp_path / 'in.json')!r} is not UTF-8 text: invalid start byte\n"
    )
    assert piped.exit_code == 1
    assert piped.stderr == "error: --input from stdin is not UTF-8 text: invalid start byte\n"
    assert deep.exit_code == 1
    assert deep.stderr == f"error: the --input file {str(tmp_path / 'deep.json')!r} is nested too deeply\n"
    assert api.requests == []


@pytest.mark.parametrize("duration", ["99999999999d", "999999999d", "9" * 5000 + "d"])
def test_an_expiry_past_the_calendar_is_a_clear_error(api: FakeApi, run_cli, duration: str) -> None:
    result = run_cli("keys", "create", "--role", "read", "--expires", duration, "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == f"error: --expires: invalid duration {duration[:40]!r}: too long\n"
    assert api.requests == []


def test_an_api_key_a_header_cannot_carry_is_a_clear_error(
    api: FakeApi, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWYARD_API_KEY", "cyk_clé")

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == (
        "error: CREWYARD_API_KEY is not a crewyard API key: it has characters other than printable ASCII\n"
    )
    assert api.requests == []


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["threads", "create", "-p", "demo", "--metadata", "{bad"], "--metadata"),
        (["threads", "create", "-p", "demo", "--values", "{bad"], "--values"),
        (["triggers", "create", "github", "-p", "demo", "--template", "{bad"], "--template"),
        (["threads", "run", "thr_01j9zq6m8k2v3w4x5y6z7a8b9c", "--resume", "{bad"], "--resume"),
    ],
)
def test_bad_json_names_the_option_it_was_given_to(api: FakeApi, run_cli, command: list[str], option: str):
    result = run_cli(*command, "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {option} is not valid JSON: Expecting property name")
    assert api.requests == []


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_a_reader_that_stops_early_ends_the_command_quietly(api: FakeApi, as_json: list[str]) -> None:
    lines = [(seq, "log", {"message": f"line {seq} " + "x" * 200}) for seq in range(1, 3000)]
    api.route("GET", f"/v1/runs/{RUN}/events", Sse([*lines, (3000, "run.completed", {})], aggregate_id=RUN))
    command = [sys.executable, "-m", "crewyard.cli", "runs", "events", RUN, "--api", api.url, *as_json]

    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as events:
        assert events.stdout is not None and events.stderr is not None
        first = events.stdout.readline()  # `| head -1`
        events.stdout.close()
        err = events.stderr.read()
        code = events.wait(timeout=60)

    assert b"line 1 " in first
    assert err == b""
    assert code == 1
