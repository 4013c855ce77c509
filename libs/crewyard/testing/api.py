"""HTTP helpers for tests and benchmarks: deploy a folder, wait for a run, read an SSE stream."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from crewyard.packaging import pack

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
#: How long a CrewAI environment's build may take: 160-200 s alone on 2 cores, and up to 830 s
#: measured while two other test suites build theirs beside it (what `make soak` next to
#: `make test` does). A deadline, not a wait: a build that ends sooner is taken at once.
FRAMEWORK_BUILD_S = 1100


def tarball(files: dict[str, bytes], link: tuple[str, str] | None = None) -> bytes:
    """A gzipped tar of ``files`` (name → bytes), as an upload's body; ``link``: and a symbolic
    link (its name, where it points)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type, info.linkname = tarfile.SYMTYPE, link[1]
            tar.addfile(info)
    return buf.getvalue()


def deploy(
    client: httpx.Client,
    folder: Path,
    project: str,
    *,
    name: str | None = None,
    environment: str | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Upload a crew folder and wait for its build; returns the deployment as the API shows it."""
    params = {k: v for k, v in (("name", name), ("environment", environment)) if v} or None
    r = client.post(
        f"/v1/projects/{project}/deployments",
        content=pack(folder),
        params=params,
        headers={"Content-Type": "application/gzip"},
    )
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployment_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = client.get(f"/v1/deployments/{dep_id}").json()
        if dep["status"] != "building":
            return dict(dep)
        time.sleep(0.1)
    raise AssertionError(f"deployment {dep_id} still building after {timeout}s")


def run_once(client: httpx.Client, folder: Path, project: str) -> dict[str, Any]:
    """Deploy the crew in ``folder`` to ``project``, run it once with no input, and its run at the end."""
    deploy(client, folder, project)
    return wait_run(client, client.post("/v1/runs", json={"project": project}).json()["run_id"])


def wait_run(client: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in ("succeeded", "failed", "canceled"):
            return dict(run)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not finished after {timeout}s")


def sse_events(
    client: httpx.Client,
    url: str,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Read an SSE stream into [{"id", "event", "data"}]; stop after ``stop_after`` messages, or
    once ``until`` (given the messages so far) says so."""
    out: list[dict[str, Any]] = []
    msg: dict[str, Any] = {}
    with client.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("id:"):
                msg["id"] = int(line[3:].strip())
            elif line.startswith("event:"):
                msg["event"] = line[6:].strip()
            elif line.startswith("data:"):
                msg["data"] = json.loads(line[5:].strip())
            elif line == "" and "data" in msg:
                out.append(msg)
                msg = {}
                if stop_after is not None and len(out) >= stop_after:
                    break
                if until is not None and until(out):
                    break
    return out


def write_crew(
    folder: Path,
    code: str,
    *,
    entrypoint: str = "crew:run",
    extra_toml: str = "",
    requirements: str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crew.py").write_text(code)
    (folder / "crewyard.toml").write_text(
        f'[deployment]\nframework = "python"\nentrypoint = "{entrypoint}"\n{extra_toml}\n'
    )
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder
