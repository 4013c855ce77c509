"""``--json`` on every command: scripts read JSON, never tables or sentences."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click

from crewyard.cli import cli
from crewyard.testing.fakeapi import FakeApi, Reply


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_every_command_takes_json() -> None:
    without = [
        name
        for name, command in _commands(cli)
        if not any("--json" in getattr(param, "opts", ()) for param in command.params)
    ]
    assert len(list(_commands(cli))) > 40
    assert without == []


def test_a_deletion_prints_what_it_did_as_json(api: FakeApi, run_cli) -> None:
    api.route("DELETE", "/v1/projects/research/webhooks/whk_00000000000000000000000000", Reply(204))
    result = run_cli(
        "webhooks", "delete", "whk_00000000000000000000000000", "-p", "research", "--json", "--api", api.url
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": "whk_00000000000000000000000000", "deleted": True}
    assert len(api.calls("DELETE", "/v1/projects/research/webhooks/whk_00000000000000000000000000")) == 1


def test_an_action_prints_the_api_answer_as_json(api: FakeApi, run_cli) -> None:
    answer = {"delivery_id": "dlv_1", "webhook_id": "whk_00000000000000000000000000"}
    api.route(
        "POST", "/v1/webhooks/whk_00000000000000000000000000/deliveries/dlv_1/redeliver", Reply(202, answer)
    )
    result = run_cli(
        "webhooks", "redeliver", "whk_00000000000000000000000000", "dlv_1", "--json", "--api", api.url
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == answer


def test_a_new_offline_key_as_json(run_cli) -> None:
    result = run_cli("keys", "generate", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["key"].startswith("cyk_")
