"""The build sandbox's boundary: its network and its limits, against hostile build backends.

Installing a crew's package runs the crew's own PEP 517 backend. Here that backend tries to reach
the platform's NATS port (and a port this test listens on) on every address of the machine, on the
user-mode stack's alias for the host and on the cloud metadata address — in the bwrap build
sandbox and in a docker build container; another forks without end; another eats memory. The
first build still installs from the package index and reaches none of them; the other two are
stopped and fail saying which limit stopped them."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from crewyard import cgroups, privatenet
from crewyard.builder.backends import DockerBuilder
from crewyard.core.crewfile import CrewConfig
from crewyard.environments import BuildFailed, BuildRequest, VenvBuilder, registry, sandbox, usage

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]
SITE = "lib/python3.11/site-packages"

PROBE = '''
"""A build backend that tries to reach the machine it builds on, then builds a wheel."""
import base64, hashlib, json, os, socket, zipfile

TARGETS = {targets!r}


def _try(address, port):
    try:
        with socket.create_connection((address, port), timeout=3):
            return "reached"
    except OSError as exc:
        return type(exc).__name__


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    report = {{f"{{a}}:{{p}}": _try(a, p) for a, p in TARGETS}}
    files = {{
        "probe_crew/__init__.py": "",
        "probe_crew/report.json": json.dumps(report),
        "probe_crew-0.1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: probe_crew\\nVersion: 0.1.0\\n",
        "probe_crew-0.1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        ),
    }}
    name = "probe_crew-0.1.0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as whl:
        for path, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
            whl.writestr(path, data)
        record.append("probe_crew-0.1.0.dist-info/RECORD,,")
        whl.writestr("probe_crew-0.1.0.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''

FORK_BOMB = """
import os, time

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
"""

MEMORY_HOG = """
def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    hoard = []
    while True:
        hoard.append(b"x" * (16 << 20))  # written, so every page is really used
"""


DISK_HOG = """
import os, time

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open("filler.bin", "wb") as out:  # in the build folder: the container's own disk
        for _ in range(64):
            out.write(os.urandom(1 << 20))
    time.sleep(600)
"""


#: Build backends that fill the disk without writing a byte, then wait (for the time limit).
HOG = """
import os, time

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
{body}
    time.sleep(600)
"""
SPARSE_FILES = HOG.format(
    body="""\
    for i in range(16):  # 16 GiB once packed and unpacked, not one block on this disk
        with open(f"hole{i}", "wb") as out:
            out.truncate(1 << 30)"""
)
EMPTY_FILES = HOG.format(
    body="""\
    for i in range(20_000):
        open(f"empty{i}", "w").close()"""
)
DEEP_FOLDERS = HOG.format(
    body="""\
    for _ in range(3000):
        os.mkdir("n")
        os.chdir("n")"""
)


# The probe's backend, which first tries to swap the environment folder for a link (here to a
# folder beside it, so the install still works; on the host it could point anywhere).
ENV_SWAP = (
    PROBE.format(targets=[])
    + """
_build_wheel = build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    try:
        os.rename("/opt/crewyard/env", "/opt/crewyard/env.old")
        os.symlink("env.old", "/opt/crewyard/env")
    except OSError:
        pass
    return _build_wheel(wheel_directory, config_settings, metadata_directory)
"""
)


def _crew(folder: Path, backend: str, requirements: str = "") -> Path:
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent("""\
        [project]
        name = "probe_crew"
        version = "0.1.0"

        [build-system]
        requires = []
        build-backend = "probe_backend"
        backend-path = ["."]
        """))  # fmt: skip
    (folder / "probe_backend.py").write_text(backend)
    if requirements:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def _request(root: Path) -> BuildRequest:
    config = CrewConfig(entrypoint="probe_crew:x")
    return BuildRequest(
        deployment_id="dep_sandbox", project="tests", source_dir=root, source_digest=f"sha256-{root.name}",
        config=config,
    )  # fmt: skip


async def _quiet(line: str, stream: str) -> None:
    return None


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port of this test's own, listening on every address of the machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("0.0.0.0", 0))
        server.listen(16)
        yield server.getsockname()[1]


def _machine_addresses() -> list[str]:
    shown = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True).stdout)
    found = {a["local"] for i in shown for a in i.get("addr_info", []) if a.get("family") == "inet"}
    found |= {str(n.network_address) for n in privatenet.host_addresses()}
    return sorted(found | {"127.0.0.1", "10.0.2.2"})  # 10.0.2.2: the user-mode stack's host alias


async def test_a_build_reaches_the_package_index_but_no_port_of_its_machine(
    tmp_path: Path, nats_url: str, listening_port: int
) -> None:
    nats_port = int(nats_url.rsplit(":", 1)[1])
    targets = [(a, p) for a in _machine_addresses() for p in (nats_port, listening_port)]
    targets.append(("169.254.169.254", 80))
    # The probe itself proves these are reachable from here, outside any sandbox.
    with socket.create_connection(("127.0.0.1", nats_port), timeout=5):
        pass
    root = _crew(tmp_path / "probe", PROBE.format(targets=targets), "six==1.16.0\n.\n")
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    built = await VenvBuilder(tmp_path / "cache").build(_request(root), log)
    assert built.venv_dir is not None
    # The normal part of the build installed from the package index as ever …
    assert (built.venv_dir / SITE / "six.py").is_file(), lines
    # … and the crew's code reached nothing of the machine it was built on.
    report = json.loads((built.venv_dir / SITE / "probe_crew" / "report.json").read_text())
    assert len(report) == len(targets)
    assert [t for t, outcome in report.items() if outcome == "reached"] == [], report


async def test_a_docker_build_reaches_the_package_index_but_no_port_of_its_machine(
    tmp_path: Path, nats_url: str, listening_port: int, docker_host: str, base_image: str
) -> None:
    nats_port = int(nats_url.rsplit(":", 1)[1])
    # 10.88.0.1: the engine's default bridge, i.e. this machine, as a container on it sees it.
    addresses = sorted({*_machine_addresses(), "10.88.0.1"})
    targets = [(a, p) for a in addresses for p in (nats_port, listening_port)] + [("169.254.169.254", 80)]
    marker = uuid.uuid4().hex  # an environment image of this test's own
    root = _crew(tmp_path / "probe", PROBE.format(targets=targets), f"six==1.16.0  # {marker}\n.\n")
    lines: list[str] = []

    async def log(line: str, stream: str) -> None:
        lines.append(line)

    built = await DockerBuilder(docker_host, base_image, tmp_path / "cache").build(_request(root), log)
    env_images = [ln.split()[3] for ln in lines if ln.startswith("building environment image ")]
    client = docker.DockerClient(base_url=docker_host)
    try:
        assert built.image is not None and env_images, lines
        container = client.containers.create(built.image, "true")
        try:
            stream, _ = container.get_archive(f"/opt/venv/{SITE}/probe_crew/report.json")
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.extractfile("report.json")
                assert member is not None
                report = json.loads(member.read())
            stream, _ = container.get_archive(f"/opt/venv/{SITE}/six.py")  # installed from the index
            assert b"".join(stream)
        finally:
            container.remove(force=True)
    finally:
        for image in [built.image, *env_images]:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(image, force=True)
        client.close()
    assert len(report) == len(targets)
    assert [t for t, outcome in report.items() if outcome == "reached"] == [], report


async def test_a_build_cannot_swap_its_environment_folder_for_a_link(tmp_path: Path) -> None:
    # The env folder is a mount point of its own in the sandbox: renaming it fails, so the build
    # goes on in the real folder and the host publishes that (a swap that got through would
    # fail the build instead: the host refuses an env folder that is a link).
    root = _crew(tmp_path / "swapper", ENV_SWAP)
    built = await VenvBuilder(tmp_path / "cache").build(_request(root), _quiet)
    assert built.venv_dir is not None and not built.venv_dir.is_symlink()
    assert (built.venv_dir / SITE / "probe_crew" / "report.json").is_file()
    assert not (built.venv_dir.parent / "env.old").exists()


async def test_a_sandbox_that_could_not_be_set_up_leaves_nothing_beside_its_scratch_folder(
    tmp_path: Path,
) -> None:
    scratch = tmp_path / "build" / "digest.1234"
    unusable = privatenet.NetworkPolicy(allow=("not a network",))  # the operator's setting, mistyped
    reg = registry.Registry(env={}, binds={}, uv_args=[])
    with pytest.raises(BuildFailed, match="cannot give the build its network"):
        await sandbox.run(scratch, "true\n", [], reg, sandbox.BuildLimits(), _quiet, unusable)
    assert not (tmp_path / "build" / "digest.1234.files").exists()


def test_the_registries_private_addresses_are_allowed_and_this_machines_never() -> None:
    reg = registry.from_host(
        {"PIP_INDEX_URL": "http://10.77.1.2:3141/simple", "HTTPS_PROXY": "http://127.0.0.1:3128"},
        Path("/nonexistent"),
    )
    plan, notes = sandbox.network_plan(reg, privatenet.NetworkPolicy())
    blocked = [privatenet.IPv4(n) for n in plan.blocked]
    assert not any(privatenet.IPv4("10.77.1.2/32").subnet_of(n) for n in blocked), plan.blocked
    assert any(privatenet.IPv4("10.77.1.3/32").subnet_of(n) for n in blocked)  # its neighbours stay out
    assert any(privatenet.IPv4("169.254.169.254/32").subnet_of(n) for n in blocked)
    assert len(notes) == 1 and "127.0.0.1" in notes[0] and "this machine" in notes[0]


@pytest.mark.parametrize(
    ("backend", "reason"),
    [(FORK_BOMB, r"more than 128 processes at once \(process limit\)"), (MEMORY_HOG, "ran out of memory")],
    ids=["fork-bomb", "memory-hog"],
)
async def test_a_build_over_its_limits_is_stopped_and_says_which(
    tmp_path: Path, backend: str, reason: str
) -> None:
    root = _crew(tmp_path / f"hostile-{len(backend)}", backend)
    limits = sandbox.BuildLimits(pids=128, memory_bytes=256 << 20, timeout_s=300)
    with pytest.raises(BuildFailed, match=reason):
        await VenvBuilder(tmp_path / "cache", limits=limits).build(_request(root), _quiet)
    scratch = tmp_path / "cache" / "build"
    assert not any(scratch.iterdir()) if scratch.exists() else True
    assert not cgroups.groups(
        lambda name: "@build@" in name and name.split("@", 1)[0] == cgroups.owner_tag()
    ), "the build's control group was left behind"


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        (SPARSE_FILES, r"the build wrote more than 8192 MiB \(disk limit\)"),
        (EMPTY_FILES, r"the build wrote more than 4,000 files and folders \(file count limit\)"),
        (DEEP_FOLDERS, r"the build wrote folders nested deeper than 256 \(depth limit\)"),
    ],
    ids=["sparse-files", "empty-files", "deep-folders"],
)
async def test_a_build_filling_the_disk_without_writing_bytes_is_stopped(
    tmp_path: Path, backend: str, reason: str
) -> None:
    root = _crew(tmp_path / "hostile", backend)
    limits = sandbox.BuildLimits(entries=2000, timeout_s=120)
    try:
        with pytest.raises(BuildFailed, match=reason):
            await VenvBuilder(tmp_path / "cache", limits=limits).build(_request(root), _quiet)
        scratch = tmp_path / "cache" / "build"
        assert not any(scratch.iterdir()), "the build's scratch folder was left behind"
    finally:
        usage.remove(tmp_path / "cache")  # pytest's own clean-up recurses


@pytest.mark.parametrize(
    ("backend", "limits", "reason"),
    [
        (FORK_BOMB, sandbox.BuildLimits(pids=128), r"more than 128 processes at once \(process limit\)"),
        (DISK_HOG, sandbox.BuildLimits(disk_bytes=32 << 20), r"more than 32 MiB \(disk limit\)"),
    ],
    ids=["fork-bomb", "disk-hog"],
)
async def test_a_docker_build_over_its_limits_is_stopped_and_says_which(
    tmp_path: Path, docker_host: str, base_image: str, backend: str, limits: sandbox.BuildLimits, reason: str
) -> None:
    marker = f"# {uuid.uuid4().hex}: an environment of this test's own\n"
    root = _crew(tmp_path / "hostile", backend, marker + ".\n")
    builder = DockerBuilder(docker_host, base_image, tmp_path / "cache", limits=limits)
    with pytest.raises(BuildFailed, match=reason):
        await builder.build(_request(root), _quiet)
