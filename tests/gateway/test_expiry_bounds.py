"""Expiries of keys and consumer credentials: taken only within bounds (a UTC form, not in the
past, at most 100 years ahead), and a stored extreme one still shown on the console's pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from crewyard.gateway.console.render import ENV
from crewyard.gateway.errors import ApiError
from crewyard.gateway.keys import _future

EXTREMES = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"]


def _refusal(when: datetime) -> str:
    with pytest.raises(ApiError) as caught:
        _future(when)
    assert caught.value.status == 400 and caught.value.code == "bad_request"
    return caught.value.message


def test_an_expiry_is_in_the_future_and_at_most_a_hundred_years_ahead() -> None:
    now = datetime.now(UTC)
    assert _future(None) is None
    soon, far = now + timedelta(days=1), now + timedelta(days=365 * 99)
    assert _future(soon) == soon and _future(far) == far
    assert "in the future" in _refusal(now - timedelta(seconds=1))
    assert "at most 100 years" in _refusal(now + timedelta(days=365 * 101))
    assert "at most 100 years" in _refusal(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    for when in EXTREMES:  # as the API decodes them: with their offset, no UTC form
        assert "out of range" in _refusal(datetime.fromisoformat(when))


@pytest.mark.parametrize("when", EXTREMES)
def test_a_stored_extreme_moment_is_shown_as_given_not_a_failed_page(when: str) -> None:
    page = ENV.from_string("{{ v | when }} / {{ v | clock }}")
    assert page.render(v=when) == f"{when} / {when}"
    assert page.render(v="2024-01-01T01:00:00+01:00") == "2024-01-01 00:00:00 UTC / 00:00:00"
    assert page.render(v="not a moment") == " / "


@pytest.mark.parametrize("when", [*EXTREMES, "2999-01-01T00:00:00Z"])
def test_the_api_answers_an_expiry_out_of_bounds_with_a_400(api: httpx.Client, when: str) -> None:
    r = api.post("/v1/keys", json={"role": "read", "project": "p1", "expires_at": when})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_request" and "expires_at" in r.json()["error"]["message"]
    assert when not in api.get("/v1/keys").text
