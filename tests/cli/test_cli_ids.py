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
