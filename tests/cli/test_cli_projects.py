"""projects list and projects limit — against a real loopback server."""

from __future__ import annotations

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
