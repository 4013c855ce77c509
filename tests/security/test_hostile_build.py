"""A crew whose build backend attacks the build host: it runs during ``deploy`` (installing the
crew's package runs its PEP 517 backend), tries to read the platform's data dir and secret key,
to write outside its build folder, and to see the platform's environment. Inside the build
sandbox and in a build container every attempt fails or lands in a private scratch space; the
host is unchanged; the platform still serves."""

from __future__ import annotations

import ast
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewyard import sandboxuid
from crewyard.testing.api import EXAMPLES, deploy, wait_run
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(600)
CANARY = "CREWYARD_TEST_CANARY_4f1c"

BACKEND = '''
"""A PEP 517 build backend that attacks the machine it builds on, then builds a wheel."""
import base64, hashlib, io, json, os, zipfile

DATA_DIR = {data_dir!r}
MARKER = {marker!r}


def _try(fn):
    try:
        return "ok: " + str(fn())[:200]
    except Exception as exc:
        return "refused: " + type(exc).__name__


def _write(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("written by a build backend")
    return path


def _report():
    return {{
        "read_secret_key": _try(lambda: open(os.path.join(DATA_DIR, "secret.key"), "rb").read()),
        "list_data_dir": _try(lambda: os.listdir(DATA_DIR)),
        "write_data_dir": _try(lambda: _write(os.path.join(DATA_DIR, "pwned-by-build"))),
        "write_host_path": _try(lambda: _write(MARKER)),
        "write_usr": _try(lambda: _write("/usr/local/lib/pwned-by-build")),
        "read_shadow": _try(lambda: open("/etc/shadow").read()),
        "list_root_home": _try(lambda: os.listdir("/root")),
        "environment": sorted(os.environ),
        "uid": os.getuid(),
    }}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    report = json.dumps(_report())
    code = ("import json, pathlib\\n\\ndef main(inputs):\\n"
            "    return json.loads((pathlib.Path(__file__).parent / 'report.json').read_text())\\n")
    files = {{
        "evil_crew/__init__.py": code,
        "evil_crew/report.json": report,
        "evil_crew-0.1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: evil_crew\\nVersion: 0.1.0\\n",
        "evil_crew-0.1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        ),
    }}
    record = []
    name = "evil_crew-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
            whl.writestr(path, data)
        record.append("evil_crew-0.1.0.dist-info/RECORD,,")
        whl.writestr("evil_crew-0.1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''


@pytest.fixture(scope="module", params=["bwrap", "docker"])
def building_platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlatformProcess]:
    """A platform whose own environment holds a canary; builds in the bwrap sandbox or a container."""
    env = {CANARY: "the platform's own environment"}
    if request.param == "docker":
        docker_host, base_image = (
            request.getfixturevalue("docker_host"),
            request.getfixturevalue("base_image"),
        )
        env |= {"CREWYARD_DOCKER_HOST": docker_host, "CREWYARD_BASE_IMAGE": base_image}
    build = "venv" if request.param == "bwrap" else "docker"
    p = PlatformProcess(tmp_path_factory.mktemp(f"hostile-build-{request.param}"), backend=request.param,
                        build_backend=build, env=env)  # fmt: skip
    p.start()
    yield p
    p.stop()


def _hostile_crew(folder: Path, data_dir: Path, marker: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "crewyard.toml").write_text(
        '[deployment]\nframework = "python"\nentrypoint = "evil_crew:main"\n'
    )
    (folder / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "evil_crew"
        version = "0.1.0"

        [build-system]
        requires = []
        build-backend = "evil_backend"
        backend-path = ["."]
        """))  # fmt: skip
    (folder / "evil_backend.py").write_text(BACKEND.format(data_dir=str(data_dir), marker=str(marker)))
    return folder


def test_a_build_backend_cannot_reach_the_host_and_the_platform_still_serves(
    building_platform: PlatformProcess, tmp_path: Path
):
    data_dir = building_platform.data_dir
    marker = tmp_path / "host" / "escaped-from-build"
    secret_before = (data_dir / "secret.key").read_bytes()
    crew = _hostile_crew(tmp_path / "evil", data_dir, marker)
    with building_platform.client(timeout=60) as api:
        project = f"evil-{building_platform.backend}"
        dep = deploy(api, crew, project, timeout=300)
        assert dep["status"] == "ready", dep
        run = wait_run(api, api.post("/v1/runs", json={"project": project}).json()["run_id"], timeout=120)
        assert run["status"] == "succeeded", run
        report = run["output"]
        print(json.dumps(report, indent=1))

        # What the build saw: no data dir, no secret key, no host home, a read-only system.
        assert report["read_secret_key"].startswith("refused"), report
        assert report["list_data_dir"].startswith("refused") or "secret.key" not in report["list_data_dir"]
        assert report["write_usr"].startswith("refused")
        assert report["read_shadow"].startswith("refused")
        # Of root's home only the path to the interpreter (bound read-only) exists in there.
        prefix = Path(sys.base_prefix)
        allowed = {prefix.relative_to("/root").parts[0]} if prefix.is_relative_to("/root") else set()
        seen = report["list_root_home"]
        assert seen.startswith("refused") or set(ast.literal_eval(seen.removeprefix("ok: "))) <= allowed, seen
        # Its user: 1000 in the bwrap sandbox; in a container on a rootful engine the host's own
        # uid, so no account's (it was 1000, often someone's login, who could then change a
        # shared environment while it was being built).
        assert report["uid"] == (1000 if building_platform.backend == "bwrap" else sandboxuid.DEFAULT)
        assert CANARY not in report["environment"]
        assert not [k for k in report["environment"] if k.startswith("CREWYARD_")]
        # Whatever it managed to write went to its private scratch space, never to the host.
        assert not marker.exists()
        assert not (data_dir / "pwned-by-build").exists()
        assert not Path("/usr/local/lib/pwned-by-build").exists()
        assert (data_dir / "secret.key").read_bytes() == secret_before

        # The platform still serves.
        assert api.get("/healthz").status_code == 200
        ok = deploy(api, EXAMPLES / "hello", "after-evil", timeout=300)
        run_id = api.post("/v1/runs", json={"project": "after-evil", "input": {"delay": 0}}).json()["run_id"]
        assert wait_run(api, run_id, timeout=120)["status"] == "succeeded", ok
