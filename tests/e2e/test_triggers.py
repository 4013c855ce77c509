"""Incoming triggers end to end: a POST to the secret URL starts a run with its body as input."""

from __future__ import annotations

import httpx
import pytest

from crewyard.core.signing import github_signature
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
