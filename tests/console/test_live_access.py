"""A console live stream lasts only as long as what let it in: its key revoked or its session
signed out, the stream ends at its next keep-alive (and the browser's reconnection is refused);
a live list of a project its key does not see is a 404, not an empty stream the browser would
open again every few seconds, forever.

The keep-alive interval is short here (``CREWYARD_SSE_PING``), and the test counts keep-alives,
not seconds: a stream that outlives its key sees them go on and on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from crewyard.testing.platform import PlatformProcess

PING_S = 0.1
#: Keep-alives a stream may still send after its key or session ended (the registries follow the
#: stream, a moment behind the answer that revoked or signed out): far fewer than it would send.
GRACE_PINGS = 100


@pytest.fixture(scope="module")
def quick_pings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlatformProcess]:
    p = PlatformProcess(tmp_path_factory.mktemp("live-access"), env={"CREWYARD_SSE_PING": str(PING_S)})
    p.start()
    yield p
    p.stop()


def _key(platform: PlatformProcess, project: str | None = None) -> dict[str, str]:
    with platform.client() as admin:
        made = admin.post("/v1/keys", json={"role": "read", "project": project, "name": "watcher"})
    assert made.status_code == 201, made.text
    return {"id": made.json()["id"], "token": made.json()["token"]}


def _ends_after(stream: httpx.Response, end_it: Callable[[], None]) -> int:
    """Reads to the first keep-alive, calls ``end_it``, and reads on: the keep-alives that came
    after it, once the stream ended (fails if it goes on past :data:`GRACE_PINGS`)."""
    lines = stream.iter_lines()
    assert stream.status_code == 200
    assert next(line for line in lines if line.startswith(":"))
    end_it()
    after = 0
    for line in lines:
        if line.startswith(":"):
            after += 1
            assert after <= GRACE_PINGS, "the stream outlived what let it in"
    return after


def test_a_live_stream_ends_when_its_key_is_revoked(quick_pings: PlatformProcess) -> None:
    key = _key(quick_pings)

    def revoke() -> None:
        with quick_pings.client() as admin:
            assert admin.delete(f"/v1/keys/{key['id']}").status_code == 200

    with quick_pings.client(key=key["token"]) as watcher:
        with watcher.stream("GET", "/live/runs") as stream:
            _ends_after(stream, revoke)
        assert watcher.get("/live/runs").status_code == 401  # the reconnection


def test_a_live_stream_ends_when_its_console_session_signs_out(quick_pings: PlatformProcess) -> None:
    key = _key(quick_pings)
    with httpx.Client(base_url=quick_pings.api, timeout=30) as browser:
        form = re.search(r'name="_csrf" value="([^"]+)"', browser.get("/login").text)
        assert form is not None
        signed_in = browser.post("/login", data={"_csrf": form[1], "key": key["token"], "next": "/"})
        assert signed_in.status_code == 303 and "crewyard_session" in browser.cookies
        cookie = browser.cookies["crewyard_session"]
        page = re.search(r'name="_csrf" value="([^"]+)"', browser.get("/").text)
        assert page is not None

        def sign_out() -> None:
            assert browser.post("/logout", data={"_csrf": page[1]}).status_code == 303

        with browser.stream("GET", "/live/runs") as stream:
            _ends_after(stream, sign_out)
        # The old cookie (a copy kept anywhere) opens no stream again; the key itself still works.
        again = httpx.get(quick_pings.api + "/live/runs", cookies={"crewyard_session": cookie}, timeout=30)
        assert again.status_code == 401
    with quick_pings.client(key=key["token"]) as api:
        assert api.get("/v1/runs").status_code == 200


def test_the_live_list_of_a_project_the_key_does_not_see_is_a_404(quick_pings: PlatformProcess) -> None:
    key = _key(quick_pings, project="alpha")
    with quick_pings.client(key=key["token"]) as watcher:
        refused = watcher.get("/live/runs", params={"project": "beta"})
        assert refused.status_code == 404 and "project beta not found" in refused.text  # as if none
        with watcher.stream("GET", "/live/runs", params={"project": "alpha"}) as own:
            assert own.status_code == 200
            assert next(line for line in own.iter_lines() if line.startswith(":"))
