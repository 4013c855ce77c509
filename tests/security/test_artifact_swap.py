"""The late artifact swap: a crew's background process keeps replacing ``report.md`` with a link
to a secret of the host (and back) while the runner collects the artifacts. Whatever the timing,
the runner stores the real report or skips a link (saying so) — never the secret. On the process
backend the swapping process outlives the run (it escapes with ``setsid``); in a bwrap sandbox
it dies with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(600)
REAL = "the real report\n"
RUNS = 4

SWAPPER = """
import os, time
from crewyard_runtime import artifacts_dir

SECRET = {secret!r}

def _swap_until(out, deadline):
    report, link, real = out / "report.md", out / ".link", out / ".real"
    while time.time() < deadline and out.is_dir():
        try:
            os.symlink(SECRET, link)
            os.rename(link, report)  # report.md is now a link to the secret...
            real.write_text({real!r})
            os.rename(real, report)  # ...and a regular file again
        except OSError:
            pass

def run(inputs):
    out = artifacts_dir()
    (out / "report.md").write_text({real!r})
    if os.fork() == 0:  # a grandchild in a session of its own: the process group's kill misses it
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # let the run end at once: the runner reads until its pipes close
                os.dup2(null, fd)
            os.closerange(3, 65536)
            _swap_until(out, time.time() + 20)
        os._exit(0)
    os.wait()
    time.sleep(0.2)
    return "swapping"
"""


@pytest.fixture(params=["process", "bwrap"])
def swap_platform(request: pytest.FixtureRequest) -> PlatformProcess:
    platform: PlatformProcess = request.getfixturevalue(
        "platform" if request.param == "process" else "bwrap_platform"
    )
    return platform


def test_a_late_swap_never_downloads_the_secret(swap_platform: PlatformProcess, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$the-host-secret\n")
    secret.chmod(0o600)
    project = f"swap-{swap_platform.backend}"
    crew = write_crew(tmp_path / "crew", SWAPPER.format(secret=str(secret), real=REAL))
    with swap_platform.client(timeout=60) as api:
        assert deploy(api, crew, project, timeout=600)["status"] == "ready"
        for _ in range(RUNS):
            run_id = api.post("/v1/runs", json={"project": project}).json()["run_id"]
            run = wait_run(api, run_id, timeout=120)
            assert run["status"] == "succeeded", run
            listed = api.get(f"/v1/runs/{run_id}/artifacts").json()["artifacts"]
            for artifact in listed:
                body = api.get(f"/v1/runs/{run_id}/artifacts/{artifact['name']}").content
                assert b"the-host-secret" not in body, f"{artifact['name']} leaked the host's secret"
            names = [a["name"] for a in listed]
            if "report.md" in names:
                assert api.get(f"/v1/runs/{run_id}/artifacts/report.md").text == REAL
            else:  # caught as a link: the run says it skipped it
                events = sse_events(api, f"/v1/runs/{run_id}/events")
                logs = [m["data"]["data"].get("message", "") for m in events if m["event"] == "log"]
                assert any("report.md" in line and "link" in line for line in logs), logs

        deploy(api, EXAMPLES / "hello", f"{project}-hello", timeout=600)
        again = api.post("/v1/runs", json={"project": f"{project}-hello"}).json()["run_id"]
        assert wait_run(api, again, timeout=120)["status"] == "succeeded"
