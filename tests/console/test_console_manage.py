"""The console in a real browser against ``crewyard up``: sessions that end on every gateway,
and the forms that make and change things (webhooks, triggers, schedules, consumers), the live
thread page. One platform and one browser for the whole module."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser

from crewyard.testing.api import EXAMPLES, deploy
from crewyard.testing.platform import PlatformProcess, free_port
from crewyard.testing.services import ServiceProcess

from .conftest import open_page, sign_in


@pytest.fixture(scope="module")
def deployed(platform: PlatformProcess) -> Iterator[httpx.Client]:
    with platform.client() as client:
        assert deploy(client, EXAMPLES / "hello", "hello")["status"] == "ready"
        yield client


@pytest.fixture(scope="module")
def second_gateway(platform: PlatformProcess) -> Iterator[str]:
    """Another gateway of the same platform (its own process and port), as behind a balancer."""
    port = free_port()
    gateway = ServiceProcess("gateway", platform.data_dir, platform.nats_url, port=port).start()
    api = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(api + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"the second gateway never became ready:\n{gateway.log_tail()}"
        assert gateway.proc is not None and gateway.proc.poll() is None, gateway.log_tail()
        time.sleep(0.1)
    yield api
    gateway.stop()


def _whoami(api: str, cookie: str) -> int:
    return httpx.get(api + "/v1/whoami", cookies={"crewyard_session": cookie}, timeout=30).status_code


def test_signing_out_ends_the_session_on_every_gateway_also_for_a_copied_cookie(
    browser: Browser, platform: PlatformProcess, second_gateway: str
):
    watched = open_page(browser, platform.api)
    sign_in(watched, platform.admin_key)
    p = watched.page
    copied = {c["name"]: c["value"] for c in p.context.cookies()}["crewyard_session"]
    assert _whoami(platform.api, copied) == 200
    assert _whoami(second_gateway, copied) == 200  # every gateway accepts the platform's sessions
    p.get_by_role("button", name="Sign out").click()
    p.wait_for_url(re.compile(r"/login$"))
    assert _whoami(platform.api, copied) == 401  # at once where it was signed out
    deadline = time.monotonic() + 30
    while _whoami(second_gateway, copied) != 401:
        assert time.monotonic() < deadline, "the other gateway still accepts a signed-out session"
        time.sleep(0.05)
    refused = httpx.get(second_gateway + "/", cookies={"crewyard_session": copied}, timeout=30)
    assert refused.status_code == 401 and 'name="key"' in refused.text  # the sign-in form
    sign_in(watched, platform.admin_key)  # a new session of the same key works
    assert p.goto("/").status == 200  # type: ignore[union-attr]
    p.context.close()
    assert watched.dialogs == []
