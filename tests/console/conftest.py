"""A real browser for the console's tests: Debian's Chromium (``make setup`` installs it) driven
by Playwright, whose own browser download is not used. Screenshots go to
``build/console-screenshots/`` (linked from the README, not committed)."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from crewyard.testing.platform import PlatformProcess

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "build" / "console-screenshots"
#: Conditions are waited for, never timed: a generous deadline for a loaded machine.
expect.set_options(timeout=60_000)


def chromium_path() -> str:
    path = os.environ.get("CREWYARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is missing: make setup installs it (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path())
        yield browser
        browser.close()


class Watched:
    """A page whose script errors and dialogs are recorded: a dialog would be a crew's script."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shot(self, name: str, *, full_page: bool = True) -> None:
        """A picture of the page for people to look at (``build/console-screenshots``); no test
        checks it. Chromium sometimes cannot make one on a loaded machine ("Unable to capture
        screenshot", its compositor gave no frame): then the picture is missing, the test's log says
        so, and the test goes on to its checks, which are what it is about."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)
        except PlaywrightError as exc:
            if "Unable to capture screenshot" not in str(exc):
                raise
            logging.getLogger("console-tests").warning("no screenshot %s: %s", name, exc.message)


def open_page(browser: Browser, base_url: str, **options: Any) -> Watched:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900}, **options)
    context.set_default_timeout(60_000)
    return Watched(context.new_page())


def sign_in(watched: Watched, key: str) -> None:
    """Sign in through the console's own form, as a person would."""
    p = watched.page
    p.goto("/login")
    p.get_by_label("API key").fill(key)
    p.get_by_role("button", name="Sign in").click()
    expect(p.locator("header .who")).to_contain_text("Sign out")


@pytest.fixture
def page(browser: Browser, platform: PlatformProcess) -> Iterator[Watched]:
    """A page signed in with the admin key; no script of a crew may run on it, nor fail."""
    watched = open_page(browser, platform.api)
    sign_in(watched, platform.admin_key)
    yield watched
    watched.page.context.close()
    assert watched.dialogs == [], f"a script ran: {watched.dialogs}"
    assert watched.errors == [], watched.errors


def start(api: httpx.Client, project: str, **inputs: object) -> str:
    r = api.post("/v1/runs", json={"project": project, "input": inputs})
    assert r.status_code == 202, r.text
    return str(r.json()["run_id"])


def until(p: Page, expression: str) -> None:
    """Until ``expression`` is true in the page (polled from here: the page's CSP refuses the
    string evaluation ``wait_for_function`` polls with)."""
    deadline = time.monotonic() + 60
    while not p.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.1)
