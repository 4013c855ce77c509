"""One service (``crewyard service NAME``) as a child process next to a test platform, to kill
with SIGKILL and start again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class ServiceProcess:
    def __init__(
        self, name: str, data_dir: Path, nats_url: str, *, port: int, env: dict[str, str] | None = None
    ):
        self.name, self.data_dir, self.nats_url, self.port = name, data_dir, nats_url, port
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"{name}-{os.getpid()}-{id(self)}.log"

    def start(self) -> ServiceProcess:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "crewyard.cli", "service", self.name, "--nats", self.nats_url),
                *("--data-dir", str(self.data_dir), "--port", str(self.port)),
            ],
            env=self.env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
