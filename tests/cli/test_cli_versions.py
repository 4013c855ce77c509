"""promote, deploy --env and deploy --rollback without a version: which requests they make."""

from __future__ import annotations

from crewyard.testing.fakeapi import FakeApi, Reply

MOVED = {
    "project": "research",
    "name": "default",
    "environment": "production",
    "deployment_id": "dep_2",
    "version_id": "ver_2",
    "version_number": 2,
    "previous_deployment_id": "dep_1",
    "rollback": False,
}
LISTING = {"deployments": [{"deployment_id": "dep_2", "name": "default"}]}


def test_promote_staging_to_production(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/projects/research/deployments", Reply(200, LISTING))
    api.route("POST", "/v1/projects/research/deployments/default/promote", Reply(200, MOVED))

    result = run_cli("promote", "--project", "research", "--api", api.url)

    assert result.exit_code == 0, result.stderr
    assert api.calls("POST", "/v1/projects/research/deployments/default/promote")[0].json() == {
        "to": "production",
        "from": "staging",
    }
    assert "production of default now runs version 2 (ver_2)" in result.stdout


def test_promote_a_given_version_of_a_named_deployment(api: FakeApi, run_cli) -> None:
    api.route("POST", "/v1/projects/research/deployments/writer/promote", Reply(200, MOVED))

    args = ("-p", "research", "--name", "writer", "--version", "ver_2", "--to", "staging")
    result = run_cli("promote", *args, "--api", api.url)

    assert result.exit_code == 0, result.stderr
    body = api.calls("POST", "/v1/projects/research/deployments/writer/promote")[0].json()
    assert body == {"to": "staging", "version_id": "ver_2"}


def test_rollback_without_a_version_moves_the_environment_back(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/projects/research/deployments", Reply(200, LISTING))
    api.route(
        "POST",
        "/v1/projects/research/deployments/default/rollback",
        Reply(200, {**MOVED, "environment": "staging", "version_number": 1, "rollback": True}),
    )

    result = run_cli("deploy", "--rollback", "--env", "staging", "--project", "research", "--api", api.url)

    assert result.exit_code == 0, result.stderr
    assert api.calls("POST", "/v1/projects/research/deployments/default/rollback")[0].json() == {
        "environment": "staging"
    }
    assert "staging of default is back on version 1" in result.stdout


def test_several_names_need_a_choice(api: FakeApi, run_cli) -> None:
    listing = {
        "deployments": [{"deployment_id": "dep_a", "name": "a"}, {"deployment_id": "dep_b", "name": "b"}]
    }
    api.route("GET", "/v1/projects/research/deployments", Reply(200, listing))

    result = run_cli("promote", "--project", "research", "--api", api.url)

    assert result.exit_code == 1
    assert "several deployments (a, b)" in result.stderr
