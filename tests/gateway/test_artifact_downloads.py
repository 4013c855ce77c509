"""Artifact downloads stream from the object store with ETag = sha256 and Range support, and the
client resumes a download from where it stopped."""

from __future__ import annotations

import hashlib
from pathlib import Path

from crewyard.client import Client
from crewyard.testing.api import deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

WRITER = """
import os

def run(inputs):
    data = bytes(range(256)) * 2048  # 512 KiB: several object store chunks
    with open(os.path.join(os.environ["CREWYARD_ARTIFACTS_DIR"], "data.bin"), "wb") as fh:
        fh.write(data)
    return {}
"""
DATA = bytes(range(256)) * 2048


def test_downloads_have_etags_ranges_and_resume(platform: PlatformProcess, tmp_path: Path) -> None:
    with platform.client(timeout=60) as api:
        dep = deploy(api, write_crew(tmp_path / "writer", WRITER), "downloads")
        run_id = api.post("/v1/runs", json={"deployment_id": dep["deployment_id"]}).json()["run_id"]
        assert wait_run(api, run_id)["status"] == "succeeded"
        url = f"/v1/runs/{run_id}/artifacts/data.bin"

        whole = api.get(url)
        etag = f'"{hashlib.sha256(DATA).hexdigest()}"'
        assert (whole.status_code, whole.content, whole.headers["etag"]) == (200, DATA, etag)
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["content-length"] == str(len(DATA))

        part = api.get(url, headers={"Range": "bytes=1000-200999"})
        assert part.status_code == 206 and part.content == DATA[1000:201000]
        assert part.headers["content-range"] == f"bytes 1000-200999/{len(DATA)}"
        tail = api.get(url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == DATA[-10:]

        assert api.get(url, headers={"If-None-Match": etag}).status_code == 304
        stale = api.get(url, headers={"Range": "bytes=0-9", "If-Range": '"another"'})
        assert stale.status_code == 200 and stale.content == DATA  # other version: the whole file
        past = api.get(url, headers={"Range": f"bytes={len(DATA)}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(DATA)}"

    with Client(platform.api, api_key=platform.admin_key) as client:
        resumed = b"".join(client.iter_artifact(run_id, "data.bin", offset=300_000))
    assert resumed == DATA[300_000:]
