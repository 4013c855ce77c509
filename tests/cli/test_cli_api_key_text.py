"""Spaces and line ends around an API key (pasted into an env file) are not part of it; it was
sent as is, and an HTTP header cannot end in a space: "lost the connection to the crewyard API
… (Illegal header value …)", which sent people looking for a network fault."""

from __future__ import annotations

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply

KEY = "cyk_" + "k" * 43


@pytest.mark.parametrize("pasted", [f"{KEY} ", f" {KEY}", f"{KEY}\r\n", f"\t{KEY}\n"])
def test_a_key_with_spaces_around_it_is_sent_without_them(
    api: FakeApi, run_cli, monkeypatch: pytest.MonkeyPatch, pasted: str
) -> None:
    api.route("GET", "/v1/runs", Reply(200, {"runs": [], "next_cursor": None}))
    monkeypatch.setenv("CREWYARD_API_KEY", pasted)

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 0, result.output
    assert [r.headers["authorization"] for r in api.requests] == [f"Bearer {KEY}"]


def test_a_key_with_a_space_inside_is_a_clear_error(
    api: FakeApi, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWYARD_API_KEY", "cyk_abc def")

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == "error: CREWYARD_API_KEY is not a crewyard API key: it has a space in it\n"
    assert api.requests == []
