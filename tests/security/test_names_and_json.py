"""Names are matched as a whole (no trailing newline slips through) and JSON bodies past the depth
or number bounds are a 400 naming the limit — never a 500, never an event that readers refuse."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from crewyard.core.bounds import MAX_JSON_DEPTH
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess

PROJECT = "names"


@pytest.fixture(scope="module")
def hello(platform: PlatformProcess) -> dict[str, Any]:
    with platform.client(timeout=30) as api:
        return deploy(api, EXAMPLES / "hello", PROJECT)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _refused(r: httpx.Response, needle: str, status: int = 400) -> None:
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"], r.text


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"project": "names", "timeout_s": 1' + "0" * 400 + "}", "64 bits"),
        ('{"project": "names", "timeout_s": 1e400}', "JSON"),
        ('{"project": "names", "timeout_s": 1e300}', "at most"),
        ('{"project": "names", "timeout_s": -1}', "positive"),
        ('{"project": "names", "input": {"n": 1' + "0" * 30 + "}}", "64 bits"),
        ('{"project": "names", "input": {"n": 1' + "0" * 5000 + "}}", "JSON"),
        ('{"project": "names", "input": {"x": ' + _nested(MAX_JSON_DEPTH) + "}}", "nested deeper"),
        ('{"project": "names", "input": {"x": ' + _nested(100_000) + "}}", "nested deeper"),
        ('{"project": "names\\n"}', "invalid project name"),
        ('{"deployment": "names\\n"}', "invalid project name"),
    ],
)
def test_run_requests_out_of_bounds_are_400(api, hello, body, needle):
    before = api.get("/v1/runs", params={"project": PROJECT, "limit": 500}).json()["runs"]
    r = api.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    _refused(r, needle)
    assert api.get("/v1/runs", params={"project": PROJECT, "limit": 500}).json()["runs"] == before


def test_json_just_within_the_depth_limit_runs(api, hello):
    body = '{"project": "names", "input": {"x": ' + _nested(MAX_JSON_DEPTH - 2) + "}}"
    r = api.post("/v1/runs", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    assert wait_run(api, r.json()["run_id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("PUT", "/v1/projects/names%0A/env/KEY", '{"value": "v"}', "invalid project name"),
        ("PUT", "/v1/projects/names/env/KEY%0A", '{"value": "v"}', "invalid environment variable name"),
        ("DELETE", "/v1/projects/names/env/KEY%0A", None, "invalid environment variable name"),
        ("GET", "/v1/projects/names%0A", None, "invalid project name"),
        ("POST", "/v1/projects/names%0A/deployments", None, "invalid project name"),
        ("PUT", "/v1/projects/names/env/KEY", '{"value": ' + _nested(5000) + "}", "nested deeper"),
        ("PUT", "/v1/projects/names/limits", '{"max_concurrent_runs": 1' + "0" * 30 + "}", "64 bits"),
        ("PUT", "/v1/projects/names/limits", '{"max_concurrent_runs": 10000000}', "between 1 and"),
        ("POST", "/v1/projects/names/rollback", '{"deployment_id": ' + _nested(100_000) + "}", "nested"),
    ],
)
def test_names_with_a_trailing_newline_and_deep_bodies_are_400(api, hello, method, path, body, needle):
    r = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    _refused(r, needle)


def test_idempotency_keys_are_printable_ascii(api, hello):
    r = api.post("/v1/runs", json={"project": PROJECT}, headers={"Idempotency-Key": "a\tb"})
    _refused(r, "Idempotency-Key")
    r = api.post("/v1/runs", json={"project": PROJECT}, headers={"Idempotency-Key": "x" * 256})
    _refused(r, "Idempotency-Key")


def test_the_platform_still_serves_afterwards(api, hello):
    assert api.get("/healthz").status_code == 200
    run = api.post("/v1/runs", json={"project": PROJECT, "input": {"delay": 0}}).json()["run_id"]
    assert wait_run(api, run)["status"] == "succeeded"
