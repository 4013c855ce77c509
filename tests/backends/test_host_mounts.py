"""A sandbox's private network leaves the host's mounts alone.

Its user-mode stack (slirp4netns, ``--enable-sandbox``) moves into a mount namespace of its own and
detaches the old root there. Run as root with only ``/`` made private, that detach reached every
mount below a *shared* mount of the host: podman keeps its containers' network namespaces as
mounts under the shared ``/run/netns``, and after one crew run they were gone on the host
(``podman ps`` then failed with "unknown FS magic" for every bridge-networked container)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewyard import privatenet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and network namespaces need root")


@pytest.fixture
def shared_mount(tmp_path: Path) -> Iterator[Path]:
    """A shared mount (like ``/run/netns``) with a mount below it (like a namespace's)."""
    shared, below = tmp_path / "shared", tmp_path / "shared" / "below"
    below.mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    subprocess.run(["mount", "--make-shared", str(shared)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "canary", str(below)], check=True)
    try:
        yield below
    finally:
        subprocess.run(["umount", "-R", str(shared)], check=False)


@pytest.fixture
def namespace() -> Iterator[int]:
    """A process in a network namespace of its own, its loopback up (as bwrap leaves it)."""
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", f"ip link set lo up && echo >/dev/fd/{ready_w} && exec sleep 60"],
        pass_fds=(ready_w,),
        env=privatenet.HOST_TOOL_ENV,
    )
    os.close(ready_w)
    with os.fdopen(ready_r) as ready:
        assert ready.readline() == "\n", "the namespace's loopback never came up"
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_hosts_own_network_is_never_filtered():
    before = Path("/proc/net/route").read_text()
    with pytest.raises(privatenet.NetworkError, match="no network namespace of its own"):
        privatenet.attach_blocking(os.getpid(), privatenet.plan())
    assert Path("/proc/net/route").read_text() == before


def test_a_private_network_leaves_the_hosts_shared_mounts_alone(shared_mount: Path, namespace: int):
    assert privatenet.probe() is None, privatenet.probe()
    assert os.path.ismount(shared_mount)
    stack = privatenet.attach_blocking(namespace, privatenet.plan())
    try:
        assert os.path.ismount(shared_mount), "the network stack's sandbox unmounted a host mount"
        # The stack is really up: the namespace has its tap device.
        links = subprocess.run(
            ["nsenter", f"--net=/proc/{namespace}/ns/net", "ip", "-br", "link"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "tap0" in links
    finally:
        stack.close()
    assert os.path.ismount(shared_mount)
