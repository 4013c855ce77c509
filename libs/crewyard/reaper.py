"""The reaper: ends what a process started — sandboxes, builds, containers — when it dies, however.

Why one is needed: ``--die-with-parent`` misses a bwrap sandbox whose runner is killed during
the few milliseconds in which bwrap starts; the sandbox runs on, reparented to pid 1 (measured
here: nearly every kill within a millisecond of starting one, 4 in 10 within 10 ms). Containers
do not die with their runner at all. Left running, either could still be executing a run that
another runner has taken over once the lease ran out.

How: each runner process starts one reaper (this file run as a program: standard library only,
so it starts in milliseconds and holds no platform code). The reaper waits for end-of-file on a
pipe whose write end only the runner holds (close-on-exec: no sandbox inherits it) — the kernel
closes it however the runner dies — then kills and removes every control group the runner owned
(:mod:`crewyard.cgroups`: named after the owner process) and, when the runner used a container engine on a
local socket, every container and volume labelled with the same owner; then it exits. The
reaper runs in a session of its own, so a kill of the runner's process group spares it. A reaper
killed too is covered at the next runner's start (groups of owners that are gone; containers of
the restarted runner's id).
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

#: Container label naming the runner process that started the container (``cgroups.owner_tag``).
LABEL_OWNER = "crewyard.owner"


class Reaper:
    """One per runner process and engine socket, started on first use."""

    _started: dict[tuple[int, str | None], Reaper] = {}

    def __init__(self, owner: str, docker_socket: str | None) -> None:
        read_end, self._write_end = os.pipe()  # both close-on-exec
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, owner, *([docker_socket] if docker_socket else [])],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # outlives a kill of the runner's process group
            )
        finally:
            os.close(read_end)

    @classmethod
    def ensure(cls, owner: str, docker_socket: str | None = None) -> None:
        """Start this process's reaper, or a new one if the last was killed."""
        key = (os.getpid(), docker_socket)
        current = cls._started.get(key)
        if current is None or current.proc.poll() is not None:
            if current is not None:
                os.close(current._write_end)
            cls._started[key] = cls(owner, docker_socket)


def local_socket(docker_host: str | None) -> str | None:
    """The engine's socket path when it is a local one (the only kind a reaper can reach)."""
    host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return host.removeprefix("unix://") if host.startswith("unix://") else None


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self._path)


def _call(path: str, method: str, url: str) -> object:
    conn = _UnixConnection(path)
    try:
        conn.request(method, url)
        body = conn.getresponse().read()
    finally:
        conn.close()
    with contextlib.suppress(ValueError):
        return json.loads(body or b"null")
    return None


def remove_containers(docker_socket: str, owner: str) -> int:
    """Force-remove the containers and volumes labelled with ``owner``; returns how many containers."""
    filters = urllib.parse.quote(json.dumps({"label": [f"{LABEL_OWNER}={owner}"]}))
    removed = 0
    containers = _call(docker_socket, "GET", f"/containers/json?all=1&filters={filters}")
    for container in containers if isinstance(containers, list) else []:
        with contextlib.suppress(OSError, http.client.HTTPException):
            _call(docker_socket, "DELETE", f"/containers/{container['Id']}?force=1&v=1")
            removed += 1
    volumes = _call(docker_socket, "GET", f"/volumes?filters={filters}")
    for volume in volumes.get("Volumes") or [] if isinstance(volumes, dict) else []:
        with contextlib.suppress(OSError, http.client.HTTPException):
            _call(docker_socket, "DELETE", f"/volumes/{urllib.parse.quote(volume['Name'])}?force=1")
    return removed


def _reap_when_closed(owner: str, docker_socket: str | None) -> None:
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    # Run as a program, not as a package module: load the sibling module by its file alone (the
    # package's folder on sys.path would shadow standard modules such as ``platform``).
    spec = importlib.util.spec_from_file_location("crewyard_cgroups", Path(__file__).with_name("cgroups.py"))
    assert spec is not None and spec.loader is not None
    cgroups = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cgroups)
    cgroups.sweep(owner)
    if docker_socket:
        with contextlib.suppress(OSError, http.client.HTTPException):
            remove_containers(docker_socket, owner)


if __name__ == "__main__":
    _reap_when_closed(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
