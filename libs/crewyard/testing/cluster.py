"""Every service in its own process against one nats-server, for failure tests: any piece can be
killed with SIGKILL and started again on the same data (``kill``/``start``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crewyard.natsserver import EmbeddedNats
from crewyard.testing.platform import free_port

_SERVICE = (
    "import asyncio, sys\n"
    "from crewyard import platform, settings\n"
    "s = settings.load(sys.argv[2], nats_url=sys.argv[3], port=int(sys.argv[4]), backend='process',"
    " build_backend='venv')\n"
    "asyncio.run(platform.run_service(sys.argv[1], s))\n"
)


class Cluster:
    def __init__(self, root: Path, *, runners: int = 2, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.nats = EmbeddedNats(root / "broker", port=free_port())
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.names = ["builder", "projector", "gateway", *(f"runner{i}" for i in range(1, runners + 1))]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def nats_url(self) -> str:
        return self.nats.url

    def _data_dir(self, name: str) -> Path:
        # Gateway and projector share the read model; each runner has its own work space.
        return self.root / ("web" if name in ("gateway", "projector") else name)

    def start(self, name: str) -> None:
        if name == "nats":
            self.nats.start()
            return
        service = "runner" if name.startswith("runner") else name
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVICE,
                service,
                str(self._data_dir(name)),
                self.nats.url,
                str(self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        if name == "nats":
            if self.nats.proc is not None and self.nats.proc.poll() is None:
                self.nats.proc.kill()
                self.nats.proc.wait()
            return
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, name: str) -> None:
        if name == "nats":
            self.nats.stop()
            return
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def up(self, timeout: float = 60.0) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start("nats")
        for name in self.names:
            self.start(name)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.api + "/healthz", timeout=1).json().get("nats"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("gateway did not become healthy")

    def down(self) -> None:
        for name in reversed(self.names):
            self.stop(name)
        self.stop("nats")


def crew_processes(root: Path) -> list[int]:
    """Crew processes (and their sandboxes) of a platform whose data lives under ``root``: only
    those, because other platforms on the machine run crews too."""
    found = []
    needle = str(root).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if b"crewyard_runtime" not in cmdline:
                continue
            if needle in cmdline or os.readlink(proc / "cwd").startswith(str(root)):
                found.append(int(proc.name))
        except OSError:
            pass
    return found
