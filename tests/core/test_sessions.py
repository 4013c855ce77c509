"""Console session cookies: signed, expiring, bound to one key, with a CSRF token of their own."""

from __future__ import annotations

from crewyard.core.sessions import SessionCodec

NOW = 1_800_000_000.0


def test_a_session_opens_until_it_expires_and_names_its_key():
    codec = SessionCodec(b"k" * 32)
    cookie, session = codec.issue("key_1", NOW, ttl_s=60)
    assert codec.open(cookie, NOW + 59) == session
    assert session.key_id == "key_1"
    assert codec.open(cookie, NOW + 60) is None


def test_a_changed_or_foreign_cookie_is_refused():
    codec = SessionCodec(b"k" * 32)
    cookie, _ = codec.issue("key_1", NOW)
    payload, mac = cookie.split(".")
    forged, _ = SessionCodec(b"x" * 32).issue("key_admin", NOW)
    for bad in (
        forged,
        # Another first character: its six bits are all the MAC's (the last character's low bits
        # are padding, so changing the end could leave the same bytes: "…hAA" once did).
        payload + "." + ("B" if mac[0] == "A" else "A") + mac[1:],
        payload[:-2] + "." + mac,
        "",
        "a.b.c",
        "x" * 600,
        "é.é",
    ):
        assert codec.open(bad, NOW) is None, bad


def test_gateways_with_the_same_secret_share_sessions_and_csrf_tokens_differ_per_session():
    one, two = SessionCodec(b"s" * 32), SessionCodec(b"s" * 32)
    cookie, session = one.issue("key_1", NOW)
    assert two.open(cookie, NOW) == session
    _, other = one.issue("key_1", NOW)
    assert one.csrf(session) == two.csrf(session) != one.csrf(other)
