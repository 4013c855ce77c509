"""An address where another web server answers (a proxy's error page, a dashboard) says so, rather
than quoting the page's first line ("HTTP 404 from GET /v1/runs: <!DOCTYPE HTML>") or a JSON
parser's complaint about byte 0."""

from __future__ import annotations

import pytest

from crewyard.testing.fakeapi import FakeApi, Reply

PAGE = b"<!DOCTYPE HTML>\n<html><head><title>Error response</title></head><body>404</body></html>\n"
RUN = "run_01j9zq6m8k2v3w4x5y6z7a8b9c"


def test_an_error_page_says_it_is_not_the_api(api: FakeApi, run_cli) -> None:
    api.route("GET", "/v1/runs", Reply(404, raw=PAGE, content_type="text/html"))

    result = run_cli("runs", "list", "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == (
        "error: HTTP 404 from GET /v1/runs: a web page, not an answer of the crewyard API "
        f"(is {api.url} a crewyard API?)\n"
    )


@pytest.mark.parametrize(
    ("args", "method", "path"),
    [
        (["runs", "get", RUN], "GET", f"/v1/runs/{RUN}"),  # a typed answer
        (["triggers", "list", "-p", "demo"], "GET", "/v1/projects/demo/triggers"),  # a JSON object
    ],
)
def test_a_page_answered_with_200_says_it_is_not_the_api(
    api: FakeApi, run_cli, args: list[str], method: str, path: str
) -> None:
    api.route(method, path, Reply(200, raw=PAGE, content_type="text/html"))

    result = run_cli(*args, "--api", api.url)

    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the API answered {method} {path} with a web page, not JSON: "
        "is this a crewyard API's address?\n"
    )
