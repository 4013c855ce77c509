"""An argument whose bytes are not UTF-8 (Python holds them as lone surrogates, ``'\\udcff'`` for
a byte 0xff) is one clear error and no request, wherever it would go: a path segment, a query
parameter, a JSON body, the API URL, an --input. It was ``unexpected UnicodeEncodeError``."""

from __future__ import annotations

import pytest

from crewyard.testing.fakeapi import FakeApi

NOT_UTF8 = "\udcff"  # what `crewyard … $'\xff'` hands to Python


@pytest.mark.parametrize(
    "args",
    [
        ["webhooks", "redeliver", "whk_" + "0" * 26, NOT_UTF8],  # a path segment
        ["runs", "list", "--cursor", NOT_UTF8],  # a query parameter
        ["schedules", "create", "-p", "demo", "@daily", "--timezone", NOT_UTF8],  # a JSON body
        ["triggers", "create", "-p", "demo", NOT_UTF8],  # a JSON body of a call()
        ["invoke", "-p", "demo", "-n", NOT_UTF8],  # a body sent with an idempotency key
    ],
)
def test_an_argument_that_is_not_utf8_is_one_clear_error(api: FakeApi, run_cli, args: list[str]) -> None:
    result = run_cli(*args, "--api", api.url)

    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "error: cannot send a value that is not UTF-8 text (an argument in another encoding?);"
        " nothing was sent\n"
    ), result.stderr
    assert api.requests == []


def test_an_api_url_that_is_not_utf8_is_an_invalid_url(api: FakeApi, run_cli) -> None:
    result = run_cli("runs", "list", "--api", f"{api.url}/{NOT_UTF8}")

    assert result.exit_code == 1
    assert result.stderr == f"error: invalid API URL {api.url + '/' + NOT_UTF8!r}: it is not UTF-8 text\n"
    assert api.requests == []


def test_an_input_that_is_not_utf8_says_so_rather_than_naming_surrogates(api: FakeApi, run_cli) -> None:
    result = run_cli("invoke", "-p", "demo", "-i", f'{{"topic": "{NOT_UTF8}"}}', "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == "error: --input is not UTF-8 text (an argument in another encoding?)\n"
    assert api.requests == []


@pytest.mark.parametrize("project", [NOT_UTF8, "BAD NAME", "x" * 64])
def test_a_project_name_the_platform_cannot_have_is_refused_before_anything_is_sent(
    api: FakeApi, run_cli, project: str
) -> None:
    result = run_cli("runs", "list", "-p", project, "--api", api.url)

    assert result.exit_code == 2  # a usage error, as click reports any invalid option
    assert "invalid project name" in result.stderr and "Traceback" not in result.output
    assert api.requests == []
