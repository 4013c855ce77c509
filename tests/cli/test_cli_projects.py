"""projects list and projects limit — against a real loopback server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply


def test_projects_list_reads_like_every_other_listing(api: FakeApi, run_cli) -> None:
    rows = [
        {
            "name": "research",
            "created_at": "2024-01-15T10:30:00Z",
            "current_deployment_id": "dep_01j9zq6m8k2v3w4x5y6z7a8b9c",
            "max_concurrent_runs": 4,
        },
        {"name": "scratch", "created_at": "2024-01-16T08:00:00Z"},
    ]
    api.route("GET", "/v1/projects", Reply(200, {"projects": rows}))

    table = run_cli("projects", "list", "--api", api.url)

    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["PROJECT", "CURRENT", "DEPLOYMENT", "MAX", "RUNS", "AT", "ONCE", "CREATED"]
    research = next(line.split() for line in lines if line.startswith("research"))
    # The id whole (never folded), the limit, and the time as the other listings show it.
    assert research[1:3] == ["dep_01j9zq6m8k2v3w4x5y6z7a8b9c", "4"]
    assert research[3].count("-") == 2 and research[4].count(":") == 2
    scratch = next(line.split() for line in lines if line.startswith("scratch"))
    assert scratch[1:4] == ["-", "no", "limit"]
    assert "T10:30:00Z" not in table.stdout


def test_no_projects_says_how_to_make_one(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/projects", Reply(200, {"projects": []}))

    empty = run_cli("projects", "list", "--api", api.url)

    assert empty.exit_code == 0 and empty.stdout.strip() == "No projects yet: crewyard deploy makes one."


@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (["4"], {"project": "research", "max_concurrent_runs": 4}),
        (["none"], {"project": "research", "max_concurrent_runs": None}),
    ],
)
def test_limit_says_what_the_api_set(api: FakeApi, run_cli, args: list[str], answer: dict[str, Any]) -> None:
    api.route("PUT", "/v1/projects/research/limits", Reply(200, answer))

    said = run_cli("projects", "limit", *args, "-p", "research", "--api", api.url)
    as_json = run_cli("projects", "limit", *args, "-p", "research", "--json", "--api", api.url)

    assert said.exit_code == 0, said.output
    assert said.stdout.strip() == (
        "Project research: at most 4 runs at once" if args == ["4"] else "Project research: no run limit"
    )
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == answer


@pytest.mark.parametrize(
    "body",
    [
        b"",  # a 204 from something that is not the route
        b"{}",
        b'{"max_concurrent_runs": 4}',
        b'{"project": "other", "max_concurrent_runs": 4}',
        b'{"project": "research", "max_concurrent_runs": null}',
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_limit_answered_with_something_else_is_an_error(
    api: FakeApi, run_cli, body: bytes, as_json: bool
) -> None:
    """An answer that is not the limit the route sets printed 'Project research: at most 4 runs
    at once' (or its JSON) and exited 0: every field of the answer's type has a default."""
    api.route("PUT", "/v1/projects/research/limits", Reply(200, raw=body))

    result = run_cli(
        "projects", "limit", "4", "-p", "research", *(["--json"] if as_json else []), "--api", api.url
    )

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "error: the API answered with something unexpected: not project research's limit set to 4\n"
    )


@pytest.mark.parametrize("given", ["0", "2.5", "four", "²", "٣", "9" * 5000])
def test_limit_refuses_what_is_not_a_number_of_runs(api: FakeApi, run_cli, given: str) -> None:
    """ "²" and 5,000 digits passed str.isdigit and failed in int(): "unexpected ValueError"."""
    result = run_cli("projects", "limit", given, "-p", "research", "--api", api.url)

    assert result.exit_code == 2, result.output
    assert "give a whole number of runs (at least 1) or none" in result.stderr
    assert "ValueError" not in result.output
    assert api.requests == []
