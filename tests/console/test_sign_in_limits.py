"""Failed sign-ins count against the same per-address limit as the API's failed authentications:
the form is no faster a way to try keys than the API. Only failures are refused: a right key
signs in while its address is refused (a neighbour's wrong keys must not lock it out)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from crewyard.testing.platform import PlatformProcess

WRONG = "cyk_" + "B" * 43


@pytest.fixture(scope="module")
def slow_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    """One failed authentication per ten seconds per address (a burst of one): a refused address
    stays refused for the whole of a test, however loaded the machine."""
    env = {"CREWYARD_AUTH_FAIL_LIMIT": "0.1"}
    p = PlatformProcess(tmp_path_factory.mktemp("sign-in-limits"), env=env).start()
    yield p
    p.stop()


@pytest.fixture
def form(slow_platform: PlatformProcess) -> Iterator[tuple[httpx.Client, str]]:
    """A browser on the sign-in form, and the form's CSRF token."""
    with httpx.Client(base_url=slow_platform.api, timeout=30) as browser:
        csrf = re.search(r'name="_csrf" value="([^"]+)"', browser.get("/login").text)
        assert csrf is not None
        yield browser, csrf[1]


def test_wrong_keys_at_the_form_are_slowed_down_and_so_is_the_api(
    form: tuple[httpx.Client, str], slow_platform: PlatformProcess
) -> None:
    browser, csrf = form
    first = browser.post("/login", data={"_csrf": csrf, "key": WRONG, "next": "/"})
    assert first.status_code == 401
    refused = browser.post("/login", data={"_csrf": csrf, "key": WRONG, "next": "/"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert "Too many failed attempts" in refused.text and 'name="key"' in refused.text  # the form again
    assert refused.headers["content-security-policy"].startswith("default-src 'none'")
    # One limit: the API refuses this address too, now.
    api = httpx.get(slow_platform.api + "/v1/runs", headers={"Authorization": f"Bearer {WRONG}"})
    assert api.status_code == 429
    # Refused for wrong keys, the address still signs in with a right one (the API lets it in too).
    right = browser.post("/login", data={"_csrf": csrf, "key": slow_platform.admin_key, "next": "/"})
    assert right.status_code == 303 and "crewyard_session" in browser.cookies
    again = browser.post("/login", data={"_csrf": csrf, "key": WRONG, "next": "/"})
    assert again.status_code == 429  # and wrong keys are still refused
