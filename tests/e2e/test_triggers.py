"""Incoming triggers end to end: a POST to the secret URL starts a run with its body as input."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from crewyard.core.signing import github_signature
from crewyard.launch import run_id_time
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess


@pytest.fixture(scope="module")
def trig_platform(tmp_path_factory: pytest.TempPathFactory):
    p = PlatformProcess(tmp_path_factory.mktemp("triggers"), env={"CREWYARD_TRIGGER_RATE": "1"}).start()
    with p.client(timeout=60) as client:
        assert deploy(client, EXAMPLES / "hello", "trig")["status"] == "ready"
    yield p
    p.stop()


@pytest.fixture
def client(trig_platform: PlatformProcess):
    with trig_platform.client(timeout=60) as c:
        yield c


def test_a_post_starts_a_run_with_the_body_as_input(client: httpx.Client):
    trig = client.post("/v1/projects/trig/triggers", json={"name": "ci"}).json()
    r = client.post(trig["url"], json={"topic": "from a trigger", "year": "2026"})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] in ("running", "succeeded"), answer  # it waited for the start
    run = wait_run(client, answer["run_id"])
    assert run["input"] == {"topic": "from a trigger", "year": "2026"} and run["status"] == "succeeded"
    assert answer["deployment_id"] == run["deployment_id"]
    # The version it runs, as the compatible product's 202 names it (and the run says too).
    assert answer["version_id"] == run["version_id"] != ""
    assert answer["version_number"] == run["version_number"] == 1


def test_wrong_and_revoked_tokens_are_404(client: httpx.Client):
    trig = client.post("/v1/projects/trig/triggers", json={"name": "to revoke"}).json()
    wrong = trig["url"][:-4] + ("aaaa" if not trig["url"].endswith("aaaa") else "bbbb")
    for url in (wrong, "/webhooks/runs/short", "/webhooks/runs/" + "x" * 43):
        r = client.post(url, json={})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", url
    client.delete(f"/v1/projects/trig/triggers/{trig['id']}")
    assert client.post(trig["url"], json={}).status_code == 404


def test_templates_signatures_bad_bodies_and_rate_limits(client: httpx.Client):
    trig = client.post(
        "/v1/projects/trig/triggers",
        json={
            "name": "github",
            "template": {"topic": "$.repository.full_name", "branch": "$.ref", "source": "github"},
            "signature": {"header": "X-Hub-Signature-256"},
        },
    ).json()
    secret = trig["signature_secret"]
    assert secret
    body = b'{"ref": "refs/heads/main", "repository": {"full_name": "acme/app"}}'
    unsigned = client.post(trig["url"], content=body, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "bad_signature"
    signed = client.post(
        trig["url"],
        content=body,
        headers={"content-type": "application/json", "X-Hub-Signature-256": github_signature(secret, body)},
    )
    assert signed.status_code == 202, signed.text
    run = wait_run(client, signed.json()["run_id"])
    assert run["input"] == {"topic": "acme/app", "branch": "refs/heads/main", "source": "github"}

    plain = client.post("/v1/projects/trig/triggers", json={"name": "plain"}).json()
    for bad in (b"[1, 2]", b"not json"):
        r = client.post(plain["url"], content=bad, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
    # One request a second, bursts of four: the fifth at once is refused, and says when to retry.
    codes = [client.post(plain["url"], content=b"nope").status_code for _ in range(6)]
    assert 429 in codes, codes
    limited = client.post(plain["url"], content=b"nope")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1


def test_idempotency_key_makes_a_repeated_request_the_same_run(client: httpx.Client):
    trig = client.post("/v1/projects/trig/triggers", json={"name": "retrying sender"}).json()
    key = {"Idempotency-Key": "delivery-42"}
    first = client.post(trig["url"], json={"topic": "once"}, headers=key)
    second = client.post(trig["url"], json={"topic": "once"}, headers=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["run_id"] == second.json()["run_id"]
    # The run is as new as the request: first in the newest-first list, made now.
    newest = client.get("/v1/runs", params={"project": "trig", "limit": 1}).json()["runs"][0]
    assert newest["id"] == first.json()["run_id"], newest
    assert abs(run_id_time(newest["id"]) / 1000 - time.time()) < 600
    other_body = client.post(trig["url"], json={"topic": "twice"}, headers=key)
    assert other_body.status_code == 422, other_body.text
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    # A key belongs to its trigger: another trigger's same key, or the API's, is another run.
    other = client.post("/v1/projects/trig/triggers", json={"name": "another sender"}).json()
    elsewhere = client.post(other["url"], json={"topic": "once"}, headers=key)
    assert elsewhere.status_code == 202 and elsewhere.json()["run_id"] != first.json()["run_id"]
    api = client.post("/v1/runs", json={"project": "trig", "input": {"topic": "once"}}, headers=key)
    assert api.status_code == 202, api.text
    assert api.json()["id"] not in (first.json()["run_id"], elsewhere.json()["run_id"])
    assert wait_run(client, first.json()["run_id"])["input"] == {"topic": "once"}
    late = client.post(trig["url"], json={"topic": "once"}, headers=key)  # it ended: it says so
    assert (late.status_code, late.json()["status"]) == (202, "succeeded"), late.text


def test_a_repeat_names_the_version_its_run_runs_not_the_one_current_now(client: httpx.Client):
    assert deploy(client, EXAMPLES / "hello", "trigver")["version_number"] == 1
    trig = client.post("/v1/projects/trigver/triggers", json={"name": "slow sender"}).json()
    key = {"Idempotency-Key": "delivery-44"}
    first = client.post(trig["url"], json={"topic": "v1"}, headers=key)
    assert first.status_code == 202 and first.json()["version_number"] == 1, first.text
    assert deploy(client, EXAMPLES / "hello", "trigver")["version_number"] == 2  # promoted meanwhile
    repeat = client.post(trig["url"], json={"topic": "v1"}, headers=key)
    assert repeat.status_code == 202, repeat.text
    assert {k: repeat.json()[k] for k in ("run_id", "deployment_id", "version_id", "version_number")} == {
        k: first.json()[k] for k in ("run_id", "deployment_id", "version_id", "version_number")
    }
    fresh = client.post(trig["url"], json={"topic": "v2"}, headers={"Idempotency-Key": "delivery-45"})
    assert fresh.status_code == 202 and fresh.json()["version_number"] == 2, fresh.text


def test_concurrent_repeats_of_a_keyed_request_are_one_run(client: httpx.Client):
    trig = client.post("/v1/projects/trig/triggers", json={"name": "eager sender"}).json()
    key = {"Idempotency-Key": "delivery-43"}
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: client.post(trig["url"], json={"topic": "raced"}, headers=key), range(4))
        )
    assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
    assert len({a.json()["run_id"] for a in answers}) == 1
    runs = client.get("/v1/runs", params={"project": "trig", "limit": 50, "full": "true"}).json()["runs"]
    made = [r["id"] for r in runs if r["input"] == {"topic": "raced"}]
    assert made == [answers[0].json()["run_id"]], made


def test_guessed_tokens_count_as_failed_authentications_of_their_address(client: httpx.Client):
    # Last in this module: its address is refused for a moment afterwards. Each miss costs the
    # gateway a stream request and a wait for its read model.
    codes = []
    for n in range(400):  # the address's bucket holds 50 and refills 5 a second
        answer = client.post("/webhooks/runs/" + "g" * 40 + f"{n:03d}", json={})
        codes.append(answer.status_code)
        if answer.status_code != 404:
            break
    assert codes[0] == 404 and codes[-1] == 429, codes
    assert "valid trigger URL" in answer.json()["error"]["message"] and answer.headers["retry-after"]
