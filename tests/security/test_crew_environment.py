"""A crew's environment never reaches a host process: an ``LD_PRELOAD`` pointing at a library
shipped in the crew's own source is refused by the API and in ``[deployment.env]``, and one
already stored (by an older version) is left out of the run with a warning — the library is
never loaded by bwrap or anything else on the host, and the platform's key stays where it is."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from crewyard.core.events import EnvSet
from crewyard.packaging import pack
from crewyard.secrets import SecretBox, load_key
from crewyard.testing.api import EXAMPLES, deploy, sse_events, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess
from crewyard.workspace import SOURCES

from .conftest import append_straight

pytestmark = pytest.mark.timeout(600)

EVIL_C = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Runs in every process that loads this library: proof on the host, and the old attack's loot. */
__attribute__((constructor)) static void pwn(void) {
    char comm[64] = "unknown", path[4096], buf[4096];
    FILE *c = fopen("/proc/self/comm", "r");
    if (c) { if (fgets(comm, sizeof comm, c)) comm[strcspn(comm, "\n")] = 0; fclose(c); }
    snprintf(path, sizeof path, "%s/loaded-by-%s-%d", MARKER_DIR, comm, (int)getpid());
    FILE *f = fopen(path, "w");
    if (f) { fputs("loaded\n", f); fclose(f); }
    FILE *key = fopen(SECRET_KEY, "r");
    if (key) {
        size_t n = fread(buf, 1, sizeof buf, key);
        fclose(key);
        snprintf(path, sizeof path, "%s/stolen.key", MARKER_DIR);
        FILE *out = fopen(path, "w");
        if (out) { fwrite(buf, 1, n, out); fclose(out); }
    }
}
"""

CREW = """
import os, subprocess, sys

def run(inputs):
    probe = "import os; print(os.environ.get('LD_PRELOAD'))"
    child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return {
        "ld_preload": os.environ.get("LD_PRELOAD"),
        "child_ld_preload": child.stdout.strip(),
        "ok_var": os.environ.get("OK_VAR"),
    }
"""


def _evil_crew(folder: Path, marker: Path, secret_key: Path, extra_toml: str = "") -> Path:
    write_crew(folder, CREW, extra_toml=extra_toml)
    (folder / "evil.c").write_text(EVIL_C)
    subprocess.run(
        ["cc", "-shared", "-fPIC", f'-DMARKER_DIR="{marker}"', f'-DSECRET_KEY="{secret_key}"',
         "-o", str(folder / "evil.so"), str(folder / "evil.c")],
        check=True,
    )  # fmt: skip
    return folder


def test_ld_preload_never_reaches_a_host_process(isolated_platform: PlatformProcess, tmp_path: Path) -> None:
    platform = isolated_platform
    project = f"preload-{platform.backend}"
    marker = tmp_path / "marker"
    marker.mkdir(mode=0o777)
    marker.chmod(0o777)  # writable by any process that loads the library, whatever its user
    secret_key = platform.data_dir / "secret.key"
    crew = _evil_crew(tmp_path / "crew", marker, secret_key)
    with platform.client(timeout=60) as api:
        # 1. Through the API: refused, naming the variable.
        r = api.put(f"/v1/projects/{project}/env/LD_PRELOAD", json={"value": "/app/evil.so"})
        assert r.status_code == 400 and "LD_PRELOAD" in r.json()["error"]["message"], r.text

        # 2. In the crew's own config: refused at deploy.
        configured = _evil_crew(
            tmp_path / "configured", marker, secret_key, '[deployment.env]\nLD_PRELOAD = "/app/evil.so"\n'
        )
        r = api.post(
            f"/v1/projects/{project}/deployments",
            content=pack(configured),
            headers={"Content-Type": "application/gzip"},
        )
        assert r.status_code == 400 and "LD_PRELOAD" in r.json()["error"]["message"], r.text

        # 3. Stored before names were checked: the run leaves it out and says so.
        dep = deploy(api, crew, project, timeout=600)
        assert dep["status"] == "ready", dep
        where = "/app/evil.so"
        if platform.backend == "bwrap":  # the crew's source as the host holds it
            where = str(
                platform.data_dir / "cache" / SOURCES / dep["source_digest"].replace(":", "-") / "evil.so"
            )
        box = SecretBox(load_key(platform.data_dir))
        for key, value in (("LD_PRELOAD", where), ("OK_VAR", "yes")):
            append_straight(
                platform, project, EnvSet(key=key, value=box.encrypt(project, key, value)), project
            )
        run_id = api.post("/v1/runs", json={"project": project}).json()["run_id"]
        run = wait_run(api, run_id, timeout=120)
        assert run["status"] == "succeeded", run
        assert run["output"] == {"ld_preload": None, "child_ld_preload": "None", "ok_var": "yes"}
        logs = [
            m["data"]["data"]["message"]
            for m in sse_events(api, f"/v1/runs/{run_id}/events")
            if m["event"] == "log"
        ]
        assert any("LD_PRELOAD is not applied" in line for line in logs), logs
        assert sorted(p.name for p in marker.iterdir()) == [], "the crew's library was loaded on the host"
        assert "stolen.key" not in [
            a["name"] for a in api.get(f"/v1/runs/{run_id}/artifacts").json()["artifacts"]
        ]

        # The refused name can still be removed, and the platform serves on.
        assert api.delete(f"/v1/projects/{project}/env/LD_PRELOAD").status_code == 200
        hello = deploy(api, EXAMPLES / "hello", f"{project}-hello", timeout=600)
        again = api.post("/v1/runs", json={"project": f"{project}-hello", "input": {"name": "after"}}).json()
        assert wait_run(api, again["run_id"], timeout=120)["status"] == "succeeded", hello


@pytest.fixture(autouse=True)
def _compiler() -> None:
    assert shutil.which("cc"), "a C compiler is needed (scripts/install-system.sh installs gcc)"
