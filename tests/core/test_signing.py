"""Standard Webhooks signatures, the reference product's headers, GitHub-style trigger signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from crewyard.core.signing import (
    SignatureError,
    crewship_signature,
    delivery_headers,
    github_signature,
    new_secret,
    sign,
    verify,
    verify_github,
)


def test_the_published_standard_webhooks_example_verifies():
    # The example from the Standard Webhooks specification's reference implementation tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_delivery_carries_both_header_sets_and_survives_rotation():
    old, new = new_secret(), new_secret()
    body = b'{"type":"run.succeeded"}'
    headers = delivery_headers(
        [new, old], delivery_id="dlv_1", event="run.succeeded", timestamp=1000, body=body
    )
    assert headers["webhook-id"] == headers["X-Crewship-Delivery"] == "dlv_1"
    assert headers["X-Crewship-Event"] == "run.succeeded"
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(new, headers, body, now=1000) and verify(old, headers, body, now=1000)
    assert not verify(new, headers, body + b" ", now=1000)
    assert not verify(new, headers, body, now=1000 + 301)  # stale
    expected = hmac.new(new.encode(), b"1000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Crewship-Signature"] == expected == crewship_signature(new, 1000, body)


def test_secrets_look_like_standard_webhooks_secrets():
    secret = new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    with pytest.raises(SignatureError):
        sign("nope", "id", 1, b"")


def test_github_style_signatures():
    body = b'{"ref": "refs/heads/main"}'
    good = github_signature("s3cret", body)
    assert good.startswith("sha256=")
    assert verify_github("s3cret", good, body)
    assert not verify_github("s3cret", good, body + b"x")
    assert not verify_github("s3cret", None, body)
    assert not verify_github("other", good, body)
    assert not verify_github("s3cret", "sha256=\xe9\xe9", body)  # a header may carry any character
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "\u00b2", "webhook-signature": "v1,\xe9"}
    assert not verify("s3cret", headers, body, now=2)
