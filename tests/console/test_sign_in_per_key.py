"""A key signs in a bounded number of times: every session signed out is remembered by every
gateway until it would have expired, so signing in and out in a loop must not grow that record
without bound."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from crewyard.gateway.console import signin
from crewyard.testing.platform import PlatformProcess


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("sign-ins")).start()
    yield p
    p.stop()


def _sign_in(api: str, key: str) -> httpx.Response:
    with httpx.Client(base_url=api, timeout=30) as browser:
        csrf = re.search(r'name="_csrf" value="([^"]+)"', browser.get("/login").text)
        assert csrf is not None
        return browser.post("/login", data={"_csrf": csrf[1], "key": key, "next": "/"})


def test_a_key_signs_in_a_bounded_number_of_times(platform: PlatformProcess) -> None:
    admin = {"Authorization": f"Bearer {platform.admin_key}"}

    def new_key(name: str) -> str:
        made = httpx.post(
            platform.api + "/v1/keys", headers=admin, json={"name": name, "role": "read", "project": "p"}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["token"])

    looping, other = new_key("looping"), new_key("other")
    # 120 an hour in bursts of 60: once the burst is spent, one more every 30 s. A busy machine
    # takes seconds for the burst, so a sign-in or two may have come back meanwhile.
    every = 3600 / signin.SIGN_INS_PER_HOUR
    started, signed = time.monotonic(), 0
    while (refused := _sign_in(platform.api, looping)).status_code == 303:
        signed += 1
        assert signed <= signin.SIGN_IN_BURST + (time.monotonic() - started) / every + 1
    assert signed >= signin.SIGN_IN_BURST
    assert refused.status_code == 429 and "Too many sign-ins with this key" in refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= every
    assert "crewyard_session" not in refused.headers.get("set-cookie", "")
    assert _sign_in(platform.api, other).status_code == 303  # per key: another signs in
