"""Ids given on the command line are checked before any request: an empty id or ``.`` would reach
another route (``GET /v1/runs/`` is the listing) and its answer would read as a record."""

from __future__ import annotations

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply


@pytest.mark.parametrize("bad", ["", ".", "..", "run_x", "../keys"])
@pytest.mark.parametrize(
    "command", [["runs", "get"], ["runs", "events"], ["runs", "logs"], ["runs", "cancel"]]
)
def test_a_malformed_run_id_is_an_error_without_a_request(
    api: FakeApi, run_cli, command: list[str], bad: str
) -> None:
    api.route("GET", "/v1/runs/", Reply(200, {"runs": [], "next_cursor": None}))
    api.route("GET", "/v1/runs", Reply(200, {"runs": [], "next_cursor": None}))

    result = run_cli(*command, bad, "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == f"error: {bad!r} is not a run id (they read run_ and 26 letters and digits)\n"
    assert result.stdout == "" and api.requests == []


def test_other_ids_must_at_least_be_a_path_segment(api: FakeApi, run_cli) -> None:
    for command in (["threads", "get"], ["keys", "revoke"], ["webhooks", "get", "-p", "demo"]):
        result = run_cli(*command[:2], ".", *command[2:], "--api", api.url)
        assert result.exit_code == 1, command
        assert result.stderr.startswith("error: '.' is not a"), command
    assert api.requests == []


@pytest.mark.parametrize(
    ("command", "kind", "prefix"),
    [
        (["webhooks", "get", "-p", "demo"], "webhook", "whk"),
        (["schedules", "get"], "schedule", "sch"),
        (["triggers", "revoke"], "trigger", "trg"),
        (["keys", "revoke"], "API key", "key"),
        (["consumers", "revoke"], "consumer", "con"),  # (over NATS: no --api)
    ],
)
def test_ids_of_every_kind_are_checked_for_their_form(
    api: FakeApi, run_cli, command: list[str], kind: str, prefix: str
) -> None:
    """A malformed id (``a/b`` went out as two path segments, and the answer was a bare "Not
    Found") is one clear error that says what the id should look like."""
    api_option = [] if command[0] == "consumers" else ["--api", api.url]
    for bad in ("a/b", f"{prefix}_x", "run_" + "0" * 26):
        result = run_cli(*command[:2], bad, *command[2:], *api_option)
        assert result.exit_code == 1, (command, bad, result.output)
        article = "an" if kind == "API key" else "a"
        expected = (
            f"error: {bad!r} is not {article} {kind} id (they read {prefix}_ and 26 letters and digits)\n"
        )
        assert result.stderr == expected
    assert api.requests == []


def test_a_key_pasted_where_its_id_goes_is_never_echoed(api: FakeApi, run_cli) -> None:
    for token in ("cyk_" + "s" * 43, "cyk_" + "s" * 44):  # a leaked key pasted to revoke it, whole or not
        result = run_cli("keys", "revoke", token, "--api", api.url)

        assert result.exit_code == 1
        assert (
            result.stderr == "error: that is an API key itself, not its id (key_…): see crewyard keys list\n"
        )
        assert "sss" not in result.output
    assert api.requests == []
