"""A crew's file is downloaded from the console's origin, so its type decides what a page of that
origin could do with it: only passive types (raster images, text, data) are sent as stored,
anything else as ``application/octet-stream``, which with ``nosniff`` no browser runs as a script
or applies as a stylesheet. And an answer read with a console session (or a key) is never kept
by a cache: ``Cache-Control: private, no-store``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from crewyard.testing.api import run_once, write_crew
from crewyard.testing.platform import PlatformProcess

PROJECT = "types-art"
#: File name → the Content-Type its download must have.
SENT_AS = {
    "chart.png": "image/png",
    "photo.jpg": "image/jpeg",
    "notes.txt": "text/plain",
    "report.md": "text/markdown",
    "rows.csv": "text/csv",
    "data.json": "application/json",
    "paper.pdf": "application/pdf",
    "evil.js": "application/octet-stream",
    "evil.mjs": "application/octet-stream",
    "evil.css": "application/octet-stream",
    "evil.html": "application/octet-stream",
    "evil.svg": "application/octet-stream",
    "evil.xml": "application/octet-stream",
    "evil.wasm": "application/octet-stream",
    "blob.bin": "application/octet-stream",
}
CODE = f"""
from pathlib import Path
from crewyard_runtime import artifacts_dir


def run(inputs):
    for name in {sorted(SENT_AS)!r}:
        (Path(artifacts_dir()) / name).write_text("alert(document.cookie)")
    return {{}}
"""


@pytest.fixture(scope="module")
def finished_run(platform: PlatformProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = write_crew(tmp_path_factory.mktemp("types") / "crew", CODE)
    with platform.client(timeout=60) as api:
        return run_once(api, folder, PROJECT)


@pytest.fixture
def session(platform: PlatformProcess) -> Iterator[httpx.Client]:
    """A browser signed in to the console: its session cookie, no Authorization header."""
    with httpx.Client(base_url=platform.api, timeout=30) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="_csrf" value="([^"]+)"', form)
        assert csrf is not None
        r = browser.post("/login", data={"_csrf": csrf[1], "key": platform.admin_key, "next": "/"})
        assert r.status_code == 303, r.text
        assert "crewyard_session" in browser.cookies
        yield browser


@pytest.mark.parametrize("name", sorted(SENT_AS))
def test_only_passive_types_are_sent_as_stored(
    api: httpx.Client, finished_run: dict[str, Any], name: str
) -> None:
    assert finished_run["status"] == "succeeded", finished_run
    r = api.get(f"/v1/runs/{finished_run['id']}/artifacts/{name}")
    assert r.status_code == 200 and r.content == b"alert(document.cookie)"
    assert r.headers["content-type"].split(";")[0] == SENT_AS[name]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"].startswith("attachment")


def test_the_listing_still_names_the_type_the_file_was_stored_with(
    api: httpx.Client, finished_run: dict[str, Any]
) -> None:
    listed = {
        a["name"]: a["content_type"]
        for a in api.get(f"/v1/runs/{finished_run['id']}/artifacts").json()["artifacts"]
    }
    assert listed["evil.js"] in ("text/javascript", "application/javascript")
    assert listed["evil.css"] == "text/css"


def test_answers_read_with_a_session_are_never_cached(
    session: httpx.Client, finished_run: dict[str, Any]
) -> None:
    run = finished_run["id"]
    for path in (
        "/v1/runs",
        f"/v1/runs/{run}",
        f"/v1/runs/{run}/artifacts",
        f"/v1/runs/{run}/artifacts/notes.txt",
    ):
        r = session.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["cache-control"] == "private, no-store", path


def test_answers_read_with_a_key_are_never_cached_either(
    api: httpx.Client, finished_run: dict[str, Any]
) -> None:
    run = finished_run["id"]
    for path in ("/v1/runs", f"/v1/runs/{run}", f"/v1/runs/{run}/artifacts/notes.txt"):
        assert api.get(path).headers["cache-control"] == "private, no-store", path
    page = api.get("/login")  # an open page keeps its own
    assert page.headers["cache-control"] == "no-store"
