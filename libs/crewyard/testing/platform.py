"""A whole crewyard platform in a subprocess, for tests and benchmarks (``crewyard up`` on a free port).

API keys are on, as in every ``crewyard up``: :attr:`PlatformProcess.admin_key` is the first
admin key (from ``<data dir>/admin.key``) and :meth:`PlatformProcess.client` an HTTP client
that sends it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crewyard.client import tls_context

_pick = random.SystemRandom()  # not the global generator, which tests may seed
_given: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, below the range the kernel picks outgoing connections'
    ports from: a port from that range (what binding port 0 gives) may be taken by any client's
    connection before the server that was meant to have it starts."""
    return _port_below_kernel_range(12000, 0)


def spare_port() -> int:
    """A loopback port below the ones :func:`free_port` hands out, for a container's published
    port: that is a DNAT rule of the host's firewall, not a socket, so while it exists — for good,
    should the engine fail to remove it, as Netavark sometimes does — every loopback connection to
    that port goes to the container. No other test and no listener on port 0 is given one."""
    return _port_below_kernel_range(22000, 12000)


def _port_below_kernel_range(start: int, end: int) -> int:
    """A bindable loopback port from [low - start, low - end), low being the kernel's first."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = _pick.randrange(max(1024, low - start), low - end)
        if port in _given:
            continue  # handed out before, maybe not bound yet
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


_UP = (
    "import asyncio, sys\n"
    "from crewyard import platform, settings\n"
    "s = settings.load(sys.argv[1], port=int(sys.argv[2]), backend=sys.argv[3], build_backend=sys.argv[4])\n"
    "asyncio.run(platform.up(s, embedded_nats=sys.argv[5] == '-'))\n"
)


class PlatformProcess:
    """``crewyard up`` as a child process; ``stop``/``start`` again on the same data dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        backend: str = "process",
        build_backend: str = "venv",
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.backend = backend
        self.build_backend = build_backend
        # Info-level logs in platform.log: a platform that never gets ready shows what it did last.
        self.env = {**os.environ, "CREWYARD_NATS_PORT": "0", "CREWYARD_LOG_LEVEL": "info", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = f"http://127.0.0.1:{self.port}"

    @property
    def nats_url(self) -> str:
        return (self.data_dir / "nats.url").read_text().strip()

    @property
    def creds_dir(self) -> Path:
        """The platform users' NATS credentials (``<user>.creds``; ``admin`` may do anything)."""
        return self.data_dir / "nats" / "auth" / "creds"

    def creds(self, user: str = "admin") -> Path:
        return self.creds_dir / f"{user}.creds"

    @property
    def admin_key(self) -> str:
        """The platform's first admin key (written by its first start)."""
        return (self.data_dir / "admin.key").read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` with the admin key (empty when the platform runs without keys)."""
        key_file = self.data_dir / "admin.key"
        return {"Authorization": f"Bearer {self.admin_key}"} if key_file.exists() else {}

    def client(self, *, key: str | None = None, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client of the API that sends ``key`` (default: the admin key)."""
        headers = {"Authorization": f"Bearer {key}"} if key else self.headers
        return httpx.Client(base_url=self.api, timeout=timeout, headers=headers, verify=tls_context())

    def async_client(self, *, key: str | None = None, timeout: float = 30.0) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else self.headers
        return httpx.AsyncClient(base_url=self.api, timeout=timeout, headers=headers, verify=tls_context())

    def peak_rss(self) -> int:
        """The most memory (bytes) the platform's process has held so far (``VmHWM``)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in the platform process's status")

    def start(self, timeout: float = 120.0) -> PlatformProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "platform.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _UP,
                str(self.data_dir),
                str(self.port),
                self.backend,
                self.build_backend,
                "-",
            ],
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"platform exited early:\n{self.log_tail()}")
            try:
                answer = httpx.get(self.api + "/readyz", timeout=5, verify=tls_context())
                if answer.status_code == 200:
                    return self
                last = f"{answer.status_code} {answer.text[:2000]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        broker = self._broker_dump()
        self.stop()
        raise RuntimeError(f"platform did not become ready; /readyz: {last}\n{self.log_tail()}{broker}")

    def _broker_dump(self) -> str:
        """For a platform that never got ready: its embedded nats-server's log, with a dump of
        every goroutine's stack when that server still runs (Go writes one on SIGQUIT)."""
        pids = _embedded_nats(self.data_dir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        if pids:
            time.sleep(2)
        path = self.data_dir / "nats" / "server.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()
        dump = next((i for i, line in enumerate(text) if line.startswith("SIGQUIT")), None)
        shown = text[-80:] if dump is None else text[: min(dump, 40)] + text[dump : dump + 400]
        return "\n--- the embedded nats-server's log ---\n" + "\n".join(shown)

    def log_tail(self, lines: int = 60) -> str:
        path = self.data_dir / "platform.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to the platform's process group and to its embedded nats-server (which has a
        group of its own, so that a terminal's Ctrl-C reaches only the platform, which then stops
        it last) — also when a test already killed the platform alone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in _embedded_nats(self.data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _embedded_nats(data_dir: Path) -> list[int]:
    """The nats-server processes that keep their store under ``data_dir`` (Linux ``/proc``)."""
    store = str(data_dir / "nats" / "store")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        args = [a.decode(errors="replace") for a in argv]
        if args and args[0].endswith("nats-server") and store in args:
            found.append(int(entry.name))
    return found
