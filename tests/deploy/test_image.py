"""The platform image builds with the local engine (podman's Docker API, the debootstrap base, no
package index: wheels for the lock file are handed in), runs as a non-root user with the example
crews in it, and its container answers /readyz."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from docker.utils.build import exclude_paths

from crewyard.builder.backends._base_images import START_LOST
from crewyard.testing.platform import spare_port

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "deploy" / "requirements.lock"
CACHE = Path(os.environ.get("CREWYARD_IMAGE_CACHE", "/var/cache/crewyard"))
pytestmark = pytest.mark.timeout(1800)  # the image test is slow by its fixtures (docker_host)


def context_files() -> list[str]:
    """The build context as the engine would see it (``.dockerignore`` applied)."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return sorted(exclude_paths(str(REPO), patterns, dockerfile="deploy/Dockerfile"))


def test_the_build_context_holds_no_working_copy_state() -> None:
    files = context_files()
    for prefix in (".git/", ".venv/", ".crewyard/", "tests/", "deploy/secrets/"):
        assert not [f for f in files if f.startswith(prefix)], prefix
    assert "deploy/Dockerfile" in files and "examples/hello/crewyard.toml" in files
    assert not [f for f in files if "__pycache__" in f]


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """Wheels for the lock file, made once per lock (kept with the base image's cache)."""
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    target = CACHE / f"packages-{digest}"
    if not (target / ".complete").exists():
        target.mkdir(parents=True, exist_ok=True)
        # The files the lock's hashes name: wheels for this host (Debian 12, Python 3.11, like
        # the base image), sdists for packages that publish no wheel (built in the image).
        command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check"]
        command += ["--require-hashes", "-r", str(LOCK), "-d", str(target)]
        subprocess.run(command, check=True, timeout=900)
        (target / ".complete").touch()
    return target


@pytest.fixture(scope="module")
def image(docker_host: str, base_image: str, wheelhouse: Path) -> Iterator[str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in context_files():
            tar.add(REPO / name, arcname=name, recursive=False)
        for package in sorted(p for p in wheelhouse.iterdir() if p.name != ".complete"):
            tar.add(package, arcname=f"deploy/wheels/{package.name}")
    buf.seek(0)
    tag = f"crewyard/platform-test:{uuid.uuid4().hex[:12]}"
    api = docker.APIClient(base_url=docker_host, timeout=1200)
    log: list[str] = []
    for chunk in api.build(
        fileobj=buf,
        custom_context=True,
        dockerfile="deploy/Dockerfile",
        tag=tag,
        rm=True,
        decode=True,
        pull=False,
        buildargs={"BASE": base_image, "OFFLINE": "1"},
    ):
        log.append(str(chunk.get("stream") or ""))
        if chunk.get("error"):
            pytest.fail(f"image build failed: {chunk['error']}\n{''.join(log)[-4000:]}")
    try:
        yield tag
    finally:
        api.remove_image(tag, force=True)


def test_the_image_runs_as_a_user_and_its_container_answers_readyz(docker_host: str, image: str) -> None:
    client = docker.DockerClient(base_url=docker_host, timeout=120)
    port = spare_port()
    container = client.containers.create(
        image,
        ["up", "--backend", "process"],
        ports={"8080/tcp": ("127.0.0.1", port)},
        environment={"CREWYARD_NATS_PORT": "0"},
    )
    try:
        for attempt in range(3):
            try:
                container.start()
                break
            except docker.errors.APIError as exc:
                # The engine losing the container's process while starting it: a transient on
                # a busy machine (the builder tries again too), not the image's fault.
                if not any(words in str(exc) for words in START_LOST) or attempt == 2:
                    raise
                time.sleep(1 + attempt)
        deadline = time.monotonic() + 180
        last = "no answer yet"
        while time.monotonic() < deadline:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-3000:]
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                last = f"{answer.status_code} {answer.text[:300]}"
                if answer.status_code == 200:
                    break
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        else:
            pytest.fail(f"/readyz on port {port} last said: {last}\n{container.logs().decode()[-3000:]}")
        uid = container.exec_run(["id", "-u"]).output.decode().strip()
        assert uid != "0"
        probe = container.exec_run(["python", "-m", "crewyard.healthcheck"])
        assert probe.exit_code == 0, probe.output
        examples = "from crewyard.platform import examples_dir; print((examples_dir() / 'hello').is_dir())"
        assert container.exec_run(["python", "-c", examples]).output.decode().strip() == "True"
    finally:
        container.remove(force=True)


def test_the_lock_pins_every_dependency_of_the_package() -> None:
    import re
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps}
    pinned = {line.split("==")[0].lower() for line in LOCK.read_text().splitlines() if "==" in line}
    assert wanted <= pinned, f"regenerate deploy/requirements.lock (see deploy/README.md): {wanted - pinned}"
