"""Archive bombs against a real platform: each is refused with 400/413 naming the limit, the
platform's memory stays bounded, /healthz answers while the bomb is processed, and the platform
still serves afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from crewyard.testing import bombs
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess

PROJECT = "bombs"
GZ = {"Content-Type": "application/gzip"}
#: Growth of the platform process's peak resident memory a bomb may cause (they used to cost
#: from 467 MiB to 1 GiB).
MEMORY_BOUND = 100 << 20


@pytest.fixture(scope="module")
def hello(platform: PlatformProcess) -> dict[str, Any]:
    with platform.client(timeout=30) as api:
        return deploy(api, EXAMPLES / "hello", PROJECT)


def _while_healthz_polled(platform: PlatformProcess, action: Callable[[], httpx.Response]) -> httpx.Response:
    """Run ``action`` while another thread keeps asking /healthz; every answer must be a 200
    (generous timeout: this is about the platform not freezing, not about speed)."""
    done, polling = threading.Event(), threading.Event()
    answers: list[int | str] = []

    def poll() -> None:
        with platform.client(timeout=20) as client:
            while not done.is_set():
                try:
                    answers.append(client.get("/healthz").status_code)
                except httpx.HTTPError as exc:
                    answers.append(repr(exc))
                polling.set()
                done.wait(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert polling.wait(60), "no answer from /healthz before the bomb"
        response = action()
    finally:
        done.set()
        poller.join(60)
    assert answers and all(a == 200 for a in answers), answers
    return response


BOMBS: list[tuple[str, Callable[[], bytes], int, str]] = [
    ("pax length of 128,000 digits", lambda: bombs.pax_digits(128_000), 400, "malformed pax header"),
    ("pax header of 1 GiB", lambda: bombs.pax_expanding(1 << 30), 413, "over the 1048576-byte limit"),
    ("one member of 450 MiB", lambda: bombs.huge_member(450 << 20), 413, "limit per file"),
    ("100,000 files", lambda: bombs.many_files(100_000), 413, "more than 10000 entries"),
    ("2,000 files 500 folders deep", lambda: bombs.deep_paths(2_000, 500), 413, "more than 10000 entries"),
    ("600 MiB of zeros", lambda: bombs.unpacks_to(600), 413, "unpacks to more than the 524288000-byte limit"),
]


@pytest.mark.parametrize(("what", "build", "status", "needle"), BOMBS, ids=[b[0] for b in BOMBS])
def test_bombs_are_refused_with_bounded_memory_while_the_platform_answers(
    platform, api, hello, what, build, status, needle
):
    body = build()
    assert len(body) < 2 << 20, f"{what}: the bomb itself is small"
    before = platform.peak_rss()
    r = _while_healthz_polled(
        platform, lambda: api.post(f"/v1/projects/{PROJECT}/deployments", content=body, headers=GZ)
    )
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"], r.text
    assert platform.peak_rss() - before < MEMORY_BOUND
    _still_serves(platform, api)


def test_an_endless_upload_stops_at_the_compressed_limit(platform, api, hello):
    def endless() -> Iterator[bytes]:
        chunk = bytes(1 << 20)
        for _ in range(60):  # 60 MiB, no Content-Length: the limit is enforced while reading
            yield chunk

    before = platform.peak_rss()
    r = api.post(f"/v1/projects/{PROJECT}/deployments", content=endless(), headers=GZ)
    assert r.status_code == 413, r.text
    assert "52428800-byte limit" in r.json()["error"]["message"]
    assert platform.peak_rss() - before < MEMORY_BOUND
    _still_serves(platform, api)


def _still_serves(platform: PlatformProcess, api: httpx.Client) -> None:
    assert api.get("/healthz").status_code == 200
    run = api.post("/v1/runs", json={"project": PROJECT, "input": {"delay": 0}}).json()["run_id"]
    assert wait_run(api, run)["status"] == "succeeded"
    assert list((platform.data_dir / "tmp").glob("upload-*")) == []  # spooled uploads are removed
