"""Bad input gets a clear 4xx error and loses nothing already stored."""

from __future__ import annotations

import gzip

import httpx
import pytest

from crewyard.packaging import pack
from crewyard.testing.api import EXAMPLES, deploy, sse_events, tarball, wait_run, write_crew

GZ = {"Content-Type": "application/gzip"}


CONFIG = b'[deployment]\nframework = "python"\nentrypoint = "crew:run"\n'


def _error(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["message"]
    if code:
        assert body["code"] == code
    return str(body["message"])


@pytest.fixture(scope="module")
def existing(platform) -> dict:
    with platform.client(timeout=30) as api:
        dep = deploy(api, EXAMPLES / "hello", "keep")
        run = api.post("/v1/runs", json={"project": "keep", "input": {"delay": 0}}).json()["run_id"]
        wait_run(api, run)
        return {"dep": dep, "run": api.get(f"/v1/runs/{run}").json()}


def _intact(api: httpx.Client, existing: dict) -> None:
    assert api.get(f"/v1/runs/{existing['run']['id']}").json() == existing["run"]
    dep = api.get(f"/v1/deployments/{existing['dep']['deployment_id']}").json()
    assert dep["status"] == "ready" and dep["current"] is True


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        (b"this is not a tarball", "invalid_archive", "gzip"),
        (gzip.compress(b"garbage" * 50), "invalid_archive", "valid"),
        (tarball({"crewyard.toml": CONFIG, "../escape.py": b"x"}), "invalid_archive", "outside"),
        (tarball({"crewyard.toml": CONFIG, "/etc/cron.d/x": b"x"}), "invalid_archive", "absolute"),
        (tarball({"crewyard.toml": CONFIG}, link=("evil", "/etc/passwd")), "invalid_archive", "link"),
        (tarball({"crew.py": b"x"}), "invalid_config", "crewyard.toml"),
        (
            tarball({"crewyard.toml": b"[deployment]\nframework = 'cobol'\nentrypoint = 'a:b'\n"}),
            "invalid_config",
            "framework",
        ),
        (tarball({"crewyard.toml": b"not = [valid"}), "invalid_config", "TOML"),
    ],
    # Named, not shown: a gzip header carries the time it was made, and test processes that
    # collect at different seconds must agree on every test's name.
    ids=["not-gzip", "not-tar", "dot-dot", "absolute", "symlink", "no-config", "framework", "toml"],
)
def test_bad_uploads(api, existing, body, code, needle):
    message = _error(api.post("/v1/projects/keep/deployments", content=body, headers=GZ), 400, code)
    assert needle in message
    _intact(api, existing)


def test_upload_over_the_limit(api, existing, platform):
    big = b"\x1f\x8b" + b"0" * (51 * 1024 * 1024)
    _error(api.post("/v1/projects/keep/deployments", content=big, headers=GZ), 413, "payload_too_large")
    _intact(api, existing)


def test_dependencies_that_fail_to_install(api, existing, tmp_path):
    crew = write_crew(
        tmp_path / "baddeps",
        "def run(i):\n    return i\n",
        requirements="this-package-does-not-exist-crewyard==0.0.1\n",
    )
    dep = deploy(api, crew, "keep")
    assert dep["status"] == "failed"
    assert "this-package-does-not-exist-crewyard" in dep["error_message"]
    log = sse_events(api, f"/v1/deployments/{dep['deployment_id']}/build-log")
    assert log[-1]["event"] == "deployment.failed"
    # A failed build does not replace the current deployment.
    _intact(api, existing)
    r = api.post("/v1/projects/keep/rollback", json={"deployment_id": dep["deployment_id"]})
    assert "failed" in _error(r, 409, "conflict")
    r = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"], "input": {}})
    _error(r, 409, "conflict")


def test_entrypoint_that_does_not_exist(api, existing, tmp_path):
    crew = write_crew(tmp_path / "noentry", "def run(i):\n    return i\n", entrypoint="nowhere.module:run")
    dep = deploy(api, crew, "noentry")
    assert dep["status"] == "ready"
    run_id = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"]
    run = wait_run(api, run_id)
    assert run["status"] == "failed"
    assert "nowhere" in run["error_message"]
    events = sse_events(api, f"/v1/runs/{run_id}/events")
    failed = events[-1]["data"]["data"]
    assert events[-1]["event"] == "run.failed" and "ModuleNotFoundError" in failed["stack_trace"]


def test_crew_exception_is_reported_with_traceback(api, tmp_path):
    crew = write_crew(
        tmp_path / "boom", "def run(i):\n    print('about to fail')\n    raise ValueError('bad topic')\n"
    )
    dep = deploy(api, crew, "boom")
    run = wait_run(api, api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"])
    assert run["status"] == "failed"
    assert run["error_message"] == "ValueError: bad topic"
    events = sse_events(api, f"/v1/runs/{run['id']}/events")
    assert any(m["event"] == "log" and m["data"]["data"]["message"] == "about to fail" for m in events)
    assert "raise ValueError" in events[-1]["data"]["data"]["stack_trace"]


@pytest.mark.parametrize(
    "payload",
    [
        {"project": "keep", "input": [1, 2]},
        {"project": "keep", "input": "x"},
        {"project": "keep", "input": 3},
    ],
)
def test_input_must_be_an_object(api, existing, payload):
    assert "input must be a JSON object" in _error(api.post("/v1/runs", json=payload), 400, "bad_request")
    _intact(api, existing)


def test_body_must_be_json(api):
    r = api.post("/v1/runs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert "JSON" in _error(r, 400, "bad_request")
    assert "required" in _error(api.post("/v1/runs", json={"input": {}}), 400)


def test_unknown_ids_are_404(api):
    for path in (
        "/v1/runs/run_nope",
        "/v1/deployments/dep_nope",
        "/v1/runs/run_nope/artifacts",
        "/v1/runs/run_nope/events",
        "/v1/projects/nope/deployments",
        "/v1/projects/nope/env",
    ):
        _error(api.get(path), 404, "not_found")
    _error(api.post("/v1/runs", json={"deployment_id": "dep_nope"}), 404, "not_found")
    _error(api.post("/v1/runs", json={"project": "nope"}), 404, "not_found")
    _error(api.post("/v1/runs/run_nope/cancel"), 404, "not_found")


def test_a_page_of_runs_refuses_what_it_cannot_read(api, existing):
    for params, needle in (
        ({"limit": "ten"}, "limit must be a number"),
        ({"limit": 0}, "limit must be between"),
        ({"limit": 501}, "limit must be between"),
        ({"status": "done"}, "unknown status"),
        ({"full": "yes"}, "full must be true or false"),
        ({"cursor": "zzz'"}, "cursor must be"),
        ({"cursor": "dep_01m92ddfsz64k0jghap4m2rw5v"}, "cursor must be"),
    ):
        assert needle in _error(api.get("/v1/runs", params=params), 400, "bad_request"), params
    assert api.post("/v1/runs", json={"project": "keep", "input": {}}).status_code == 202  # two runs at least
    page = api.get("/v1/runs", params={"limit": 1}).json()
    assert len(page["runs"]) == 1 and page["next_cursor"] == page["runs"][0]["id"]
    after = api.get("/v1/runs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert after["runs"][0]["id"] < page["runs"][0]["id"]
    _intact(api, existing)


def test_artifact_that_does_not_exist(api, existing):
    _error(api.get(f"/v1/runs/{existing['run']['id']}/artifacts/nope.md"), 404, "not_found")


def test_rollback_rules(api, existing, tmp_path):
    other = deploy(api, EXAMPLES / "hello", "other-project")
    r = api.post("/v1/projects/keep/rollback", json={"deployment_id": other["deployment_id"]})
    # Another project's version is as missing as an unknown one (a key never learns it exists).
    assert "not found" in _error(r, 404)
    _error(api.post("/v1/projects/keep/rollback", json={"deployment_id": "dep_nope"}), 404)
    _error(api.post("/v1/projects/keep/rollback", json={}), 400)
    _intact(api, existing)


def test_rollback_makes_an_earlier_deployment_current(api, tmp_path):
    first = deploy(api, EXAMPLES / "hello", "versions")
    crew = write_crew(tmp_path / "v2", "def run(i):\n    return {'version': 2}\n")
    second = deploy(api, crew, "versions")
    assert api.get(f"/v1/deployments/{second['deployment_id']}").json()["current"] is True
    r = api.post("/v1/projects/versions/rollback", json={"deployment_id": first["deployment_id"]})
    assert r.status_code == 200 and r.json()["current"] is True
    run = api.post("/v1/runs", json={"project": "versions", "input": {"delay": 0}}).json()
    assert run["deployment_id"] == first["deployment_id"]
    listing = api.get("/v1/projects/versions/deployments").json()["deployments"]
    assert [d["current"] for d in listing if d["deployment_id"] == first["deployment_id"]] == [True]


def test_invalid_project_name_and_env_key(api):
    _error(
        api.post("/v1/projects/Bad.Name/deployments", content=pack(EXAMPLES / "hello"), headers=GZ),
        400,
        "invalid_project",
    )
    _error(api.put("/v1/projects/keep/env/1BAD", json={"value": "x"}), 400, "invalid_key")
    for name in ("LD_PRELOAD", "PYTHONPATH", "NODE_OPTIONS", "CREWYARD_RUN_ID"):
        message = _error(api.put(f"/v1/projects/keep/env/{name}", json={"value": "x"}), 400, "invalid_key")
        assert name in message
    _error(api.put("/v1/projects/keep/env/OK_KEY", json={"value": 5}), 400)
    _error(api.delete("/v1/projects/keep/env/NOT_SET"), 404)


def test_page_offsets_beyond_what_the_read_model_can_take_are_refused(api):
    for path in ("/v1/threads", "/v1/threads/thr_0000000000000000000000000/history"):
        r = api.get(path, params={"offset": 2**70})
        if r.status_code != 404:  # an unknown thread may be refused before its page is looked at
            assert "offset" in _error(r, 400), path
    assert api.get("/v1/threads", params={"offset": 2**63}).status_code == 400
    assert api.get("/v1/threads", params={"offset": 5}).status_code == 200
    page = api.get("/threads", params={"offset": 2**63})  # the console's: a 500 before
    assert page.status_code == 400 and "offset must be at most" in page.text, page.text[:300]
    assert api.get("/threads", params={"offset": 5}).status_code == 200


def test_a_copied_thread_has_the_metadata_bound_of_a_new_one(api, existing):
    big = {"notes": "m" * (1 << 20)}  # over the 1 MiB a thread's metadata may hold
    assert _error(
        api.post("/v1/threads", json={"project": "keep", "metadata": big}), 413, "payload_too_large"
    )
    thread = api.post("/v1/threads", json={"project": "keep", "metadata": {"a": 1}})
    assert thread.status_code == 201, thread.text
    copied = api.post(f"/v1/threads/{thread.json()['thread_id']}/copy", json={"metadata": big})
    assert "metadata is larger than" in _error(copied, 413, "payload_too_large")
    kept = api.post(f"/v1/threads/{thread.json()['thread_id']}/copy", json={"metadata": {"b": 2}})
    assert kept.status_code == 201 and kept.json()["metadata"] == {"b": 2}, kept.text
