"""Requests with odd values in them get a 4xx with a reason, never a 500 or a stream that never
ends — and what they would have broken (other projects' schedules) goes on working."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest

from crewyard.core.signing import github_signature
from crewyard.testing.api import EXAMPLES, deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

PROJECT = "odd"


@pytest.fixture(scope="module")
def dep(platform: PlatformProcess) -> dict[str, Any]:
    with platform.client(timeout=120) as api:
        d = deploy(api, EXAMPLES / "hello", PROJECT)
    assert d["status"] == "ready", d
    return d


def _sse(platform: PlatformProcess, path: str, headers: dict[str, str] | None = None) -> list[str]:
    """The ids of a stream's events, read until the server ends it (the client gives up at 30 s)."""
    ids = []
    with (
        httpx.Client(base_url=platform.api, headers=platform.headers, timeout=30) as client,
        client.stream("GET", path, headers=headers or {}) as r,
    ):
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
    return ids


def test_a_schedule_whose_day_never_comes_is_refused_and_others_keep_firing(
    api: httpx.Client, dep: dict[str, Any]
):
    path = f"/v1/projects/{PROJECT}/schedules"
    for cron in ("0 0 30 2 *", "0 0 31 4 *"):
        r = api.post(path, json={"cron": cron})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_schedule", r.text
    for folder in ("America", "Etc"):
        r = api.post(path, json={"cron": "0 9 * * *", "timezone": folder})
        assert r.status_code == 400 and "timezone" in r.json()["error"]["message"], r.text
    big = api.post(path, json={"cron": "@yearly", "input": {"blob": "x" * (1024 * 1024)}})
    assert big.status_code == 413, big.text
    assert api.get(path).json()["schedules"] == []  # nothing of them was stored
    every = api.post(path, json={"cron": "* * * * *"})
    assert every.status_code == 201, every.text
    deadline = time.monotonic() + 90
    while (s := api.get(f"{path}/{every.json()['id']}").json())["fired"] == 0:
        assert time.monotonic() < deadline, s
        time.sleep(1)
    assert wait_run(api, s["last_run_id"])["status"] == "succeeded"
    assert api.delete(f"{path}/{every.json()['id']}").status_code == 200


def test_a_table_filter_past_64_bit_integers_compares_as_a_number(api: httpx.Client, dep: dict[str, Any]):
    t = api.post(
        "/v1/tables",
        json={"project": PROJECT, "name": "scores", "columns": [{"name": "score", "type": "number"}]},
    )
    assert t.status_code == 201, t.text
    rows = f"/v1/tables/{t.json()['id']}/rows"
    assert api.post(rows, json={"score": 5}).status_code == 201
    for flt, count in (
        ("score:gt:1e30", 0),
        ("score:lt:1e30", 1),
        ("score:eq:1e19", 0),
        ("score:gt:-1e19", 1),
    ):
        r = api.get(rows, params={"filter": flt})
        assert r.status_code == 200, (flt, r.text)
        assert len(r.json()["rows"]) == count, (flt, r.json())


def test_a_trigger_template_indexing_with_a_non_ascii_digit_picks_nothing(
    api: httpx.Client, dep: dict[str, Any]
):
    t = api.post(
        f"/v1/projects/{PROJECT}/triggers", json={"name": "odd", "template": {"x": "$.a.²", "y": "$.a.1"}}
    )
    assert t.status_code == 201, t.text
    fired = httpx.post(f"{api.base_url}/webhooks/runs/{t.json()['token']}", json={"a": [1, 2]}, timeout=30)
    assert fired.status_code in (200, 202), fired.text
    run = api.get(f"/v1/runs/{fired.json()['run_id']}").json()
    assert run["input"] == {"x": None, "y": 2}


def test_a_build_log_ends_by_either_id_and_when_resumed_past_its_end(
    platform: PlatformProcess, dep: dict[str, Any]
):
    by_dep = _sse(platform, f"/v1/deployments/{dep['id']}/build-log")
    assert by_dep, "no build events"
    assert _sse(platform, f"/v1/deployments/{dep['version_id']}/build-log") == by_dep
    assert _sse(platform, f"/v1/deployments/{dep['id']}/build-log", {"Last-Event-ID": "1000000000"}) == []


def test_a_resume_point_past_any_sequence_is_a_bad_request(api: httpx.Client, dep: dict[str, Any]):
    run = api.post("/v1/runs", json={"project": PROJECT, "input": {}}).json()
    wait_run(api, run["run_id"])
    for path in (f"/v1/runs/{run['run_id']}/events", "/v1/events", f"/v1/deployments/{dep['id']}/build-log"):
        for value in (str(2**64 - 1), str(2**63)):
            r = api.get(path, headers={"Last-Event-ID": value})
            assert r.status_code == 400, (path, value, r.text)
            assert r.json()["error"]["code"] == "bad_request"


def test_an_environment_value_no_process_can_be_given_is_refused(api: httpx.Client, dep: dict[str, Any]):
    r = api.put(f"/v1/projects/{PROJECT}/env/BAD", json={"value": "a\u0000b"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]["message"], r.text
    assert "BAD" not in [e["key"] for e in api.get(f"/v1/projects/{PROJECT}/env").json()["env"]]
    run = api.post("/v1/runs", json={"project": PROJECT, "input": {}}).json()
    assert wait_run(api, run["run_id"])["status"] == "succeeded"


def test_the_consoles_run_list_refuses_a_project_name_that_is_not_one(api: httpx.Client, dep: dict[str, Any]):
    for odd in (">", "*", "a.b", "a b", "_secret"):
        for path in ("/live/runs", "/"):
            r = api.get(path, params={"project": odd})
            assert r.status_code == 400, (path, odd, r.status_code)


def test_a_trigger_repeat_with_another_body_is_refused_and_an_odd_signature_is_a_401(
    api: httpx.Client, dep: dict[str, Any]
):
    plain = api.post(f"/v1/projects/{PROJECT}/triggers", json={"name": "idem"}).json()
    fire = f"{api.base_url}/webhooks/runs/{plain['token']}"
    first = httpx.post(fire, json={"a": 1}, headers={"Idempotency-Key": "k1"}, timeout=30)
    again = httpx.post(fire, json={"a": 1}, headers={"Idempotency-Key": "k1"}, timeout=30)
    other = httpx.post(fire, json={"a": 2}, headers={"Idempotency-Key": "k1"}, timeout=30)
    assert first.status_code == again.status_code == 202, (first.text, again.text)
    assert again.json()["run_id"] == first.json()["run_id"]
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
    signed = api.post(
        f"/v1/projects/{PROJECT}/triggers", json={"name": "signed", "signature": {"header": "X-Sig"}}
    ).json()
    odd = httpx.post(
        f"{api.base_url}/webhooks/runs/{signed['token']}",
        content=b"{}",
        headers={"Content-Type": "application/json", "X-Sig": "sha256=\xe9\xe9".encode("latin-1")},
        timeout=30,
    )
    assert odd.status_code == 401, odd.text


def test_unsigned_requests_do_not_use_up_a_signed_triggers_rate_limit(api: httpx.Client, dep: dict[str, Any]):
    # The limit was taken before the signature was checked: anyone with the URL could keep the
    # sender's correctly signed requests at 429 with unsigned ones.
    signed = api.post(
        f"/v1/projects/{PROJECT}/triggers", json={"name": "guarded", "signature": {"header": "X-Sig"}}
    ).json()
    fire = f"{api.base_url}/webhooks/runs/{signed['token']}"
    with httpx.Client(timeout=30) as anyone:
        codes = {anyone.post(fire, content=b"{}").status_code for _ in range(25)}
        assert codes == {401}
        for wrong in ("sha256=" + "0" * 64, "sha256=" + "0" * 63, "sha1=" + "0" * 40, "x" * 5000):
            codes = {anyone.post(fire, content=b"{}", headers={"X-Sig": wrong}).status_code for _ in range(6)}
            assert codes == {401}, wrong
    body = b'{"n": 1}'
    headers = {
        "Content-Type": "application/json",
        "X-Sig": github_signature(signed["signature_secret"], body),
    }
    sender = httpx.post(fire, content=body, headers=headers, timeout=30)
    assert sender.status_code == 202, sender.text


def test_a_crew_whose_files_break_its_build_fails_it_and_is_never_left_building(
    platform: PlatformProcess, tmp_path
):
    folder = write_crew(tmp_path / "deep", "def run(inputs):\n    return inputs\n")
    (folder / "pyproject.toml").write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    with platform.client(timeout=120) as api:
        d = deploy(api, folder, "odd-build")
    assert d["status"] == "failed", d
    assert "nested too deeply" in d["error_message"], d


def test_the_consoles_own_files_name_their_type_and_charset_once(api: httpx.Client):
    for name, media in (("console.js", "javascript"), ("console.css", "text/css")):
        kind = api.get(f"/static/{name}").headers["content-type"]
        assert media in kind and kind.count("charset=utf-8") == 1, kind  # "…; charset=utf-8" twice


def _raw(platform: PlatformProcess, request: bytes) -> tuple[int, dict[str, Any]]:
    """Send raw bytes to the API port: the status and JSON body of the answer (read until closed)."""
    host, port = platform.api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_the_api_port_refuses_oversized_heads_and_non_http_in_its_error_shape(platform: PlatformProcess):
    big = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 70_000 + b"\r\n\r\n"
    status, body = _raw(platform, big)
    assert status == 431 and body["error"]["code"] == "headers_too_large", body
    status, body = _raw(platform, b"\x00\x01 not http\r\n\r\n")
    assert status == 400 and body["error"]["code"] == "bad_request", body
    with platform.client() as api:  # and the gateway goes on
        assert api.get("/healthz").status_code == 200
