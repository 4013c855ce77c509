"""An answer that is not what the route promises is one red line and exit code 1 — with --json
as well: a command never prints success, a table or the answer as JSON before it has read the
answer as its contract type."""

from __future__ import annotations

import json

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply

WHK = "whk_00000000000000000000000000"
SCH = "sch_00000000000000000000000000"
DLV = "dlv_1"
HOOKS = "/v1/projects/demo/webhooks"

#: (command, method, path) of every command that shows what the API answered.
SHOWN = [
    (["webhooks", "create", "https://example.com/hook"], "POST", HOOKS),
    (["webhooks", "list"], "GET", HOOKS),
    (["webhooks", "get", WHK], "GET", f"{HOOKS}/{WHK}"),
    (["webhooks", "update", WHK, "--description", "x"], "PATCH", f"{HOOKS}/{WHK}"),
    (["webhooks", "enable", WHK], "PATCH", f"{HOOKS}/{WHK}"),
    (["webhooks", "disable", WHK], "PATCH", f"{HOOKS}/{WHK}"),
    (["webhooks", "rotate-secret", WHK], "POST", f"{HOOKS}/{WHK}/rotate-secret"),
    (["webhooks", "deliveries", WHK], "GET", f"/v1/webhooks/{WHK}/deliveries"),
    (["webhooks", "redeliver", WHK, DLV], "POST", f"/v1/webhooks/{WHK}/deliveries/{DLV}/redeliver"),
    (["schedules", "create", "@daily"], "POST", "/v1/projects/demo/schedules"),
    (["schedules", "list"], "GET", "/v1/projects/demo/schedules"),
    (["schedules", "get", SCH], "GET", f"/v1/projects/demo/schedules/{SCH}"),
    (["schedules", "pause", SCH], "POST", f"/v1/projects/demo/schedules/{SCH}/pause"),
    (["schedules", "resume", SCH], "POST", f"/v1/projects/demo/schedules/{SCH}/resume"),
    (["triggers", "create", "ci"], "POST", "/v1/projects/demo/triggers"),
    (["triggers", "list"], "GET", "/v1/projects/demo/triggers"),
]
#: The two routes that take no project: the webhook's id names it (and the gateway checks the key's
#: project against the webhook's).
NO_PROJECT = {"deliveries", "redeliver"}


def _args(command: list[str]) -> list[str]:
    return command if command[1] in NO_PROJECT else [*command, "-p", "demo"]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("body", [b"{}", b""], ids=["empty-object", "no-body"])
@pytest.mark.parametrize(("command", "method", "path"), SHOWN, ids=[" ".join(c[:2]) for c, _, _ in SHOWN])
def test_an_answer_the_contract_does_not_fit_is_an_error(
    api: FakeApi, run_cli, command: list[str], method: str, path: str, body: bytes, as_json: bool
) -> None:
    """With --json these printed the answer ({} included) and exited 0; redeliver printed
    '✓ redelivering' without reading the answer at all."""
    api.route(method, path, Reply(200, raw=body))

    result = run_cli(*_args(command), *(["--json"] if as_json else []), "--api", api.url)

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: the API answered with something unexpected: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.output
    assert len(api.calls(method, path)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        {"delivery_id": "dlv_2", "webhook_id": WHK, "status": "pending"},
        {"delivery_id": DLV, "webhook_id": "whk_11111111111111111111111111", "status": "pending"},
    ],
)
def test_redeliver_of_another_delivery_is_an_error(api: FakeApi, run_cli, answer: dict[str, str]) -> None:
    api.route("POST", f"/v1/webhooks/{WHK}/deliveries/{DLV}/redeliver", Reply(202, answer))

    result = run_cli("webhooks", "redeliver", WHK, DLV, "--api", api.url)

    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: the API answered with something unexpected: not a redelivery of {DLV}\n"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_redeliver_says_what_the_api_answered(api: FakeApi, run_cli, as_json: bool) -> None:
    answer = {"delivery_id": DLV, "webhook_id": WHK, "status": "pending"}
    api.route("POST", f"/v1/webhooks/{WHK}/deliveries/{DLV}/redeliver", Reply(202, answer))

    result = run_cli("webhooks", "redeliver", WHK, DLV, *(["--json"] if as_json else []), "--api", api.url)

    assert result.exit_code == 0, result.output
    if as_json:
        assert json.loads(result.stdout) == answer
    else:
        assert result.stdout.strip() == f"✓ redelivering {DLV}"
