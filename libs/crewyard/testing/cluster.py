"""Every service in its own process against one nats-server (or a NATS cluster of several nodes,
``nats1``…), for failure tests: any piece can be killed with SIGKILL and started again on the
same data (``kill``/``start``). With several gateways, each has its own projector and read model
(``gateway1`` + ``projector1`` …), as on separate hosts. Each service answers ``/healthz`` and
``/readyz`` (``health_url``, ``readyz``): a gateway on its API port, the others on a health
listener of their own. The first admin key is made here and given to every gateway as an
operator would (``CREWYARD_ADMIN_KEY_FILE``): :attr:`admin_key`, :meth:`client`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from crewyard.client import tls_context
from crewyard.core.access import new_token
from crewyard.natsserver import EmbeddedNats
from crewyard.testing.natscluster import NatsCluster
from crewyard.testing.platform import free_port

_SERVICE = (
    "import asyncio, sys\n"
    "from crewyard import platform, settings\n"
    "s = settings.load(sys.argv[2], nats_url=sys.argv[3], port=int(sys.argv[4]), backend=sys.argv[5],"
    " build_backend='venv')\n"
    "asyncio.run(platform.run_service(sys.argv[1], s))\n"
)


class Cluster:
    def __init__(
        self,
        root: Path,
        *,
        runners: int = 2,
        gateways: int = 1,
        nats_nodes: int = 1,
        backend: str = "process",
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.backend = backend
        self.nats = EmbeddedNats(root / "broker", port=free_port())
        self.nats_cluster = NatsCluster(root / "broker", nats_nodes) if nats_nodes > 1 else None
        self.admin_key = new_token()
        self.admin_key_file = root / "admin.key"
        self.env = {
            **os.environ,
            "CREWYARD_NATS_CREDS": str(self.creds_dir),
            "CREWYARD_ADMIN_KEY_FILE": str(self.admin_key_file),
            **(env or {}),
        }
        if self.nats_cluster is not None:
            self.env["CREWYARD_STREAM_REPLICAS"] = str(min(3, nats_nodes))
        web = (
            [("projector", "gateway")]
            if gateways == 1
            else [(f"projector{i}", f"gateway{i}") for i in range(1, gateways + 1)]
        )
        self.gateways = [g for _, g in web]
        self.names = [
            "builder",
            *(n for pair in web for n in pair),
            *(f"runner{i}" for i in range(1, runners + 1)),
        ]
        self.ports = {g: free_port() for g in self.gateways}
        self.apis = [f"http://127.0.0.1:{port}" for port in self.ports.values()]
        self.port, self.api = self.ports[self.gateways[0]], self.apis[0]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.health_ports = {name: free_port() for name in self.names if name not in self.ports}

    @property
    def nats_url(self) -> str:
        if self.nats_cluster is not None:
            return self.nats_cluster.url
        # Known before the server starts (a fixed port): services may start first and wait.
        return f"nats://{self.nats.host}:{self.nats.port}"

    def health_url(self, name: str) -> str:
        """Where ``name`` answers ``/healthz`` and ``/readyz``."""
        port = self.ports[name] if name in self.ports else self.health_ports[name]
        return f"http://127.0.0.1:{port}"

    def readyz(self, name: str) -> httpx.Response:
        return httpx.get(self.health_url(name) + "/readyz", timeout=10, verify=tls_context())

    @property
    def creds_dir(self) -> Path:
        """Every platform user's NATS credentials (each service connects as its own user)."""
        if self.nats_cluster is not None:
            return self.nats_cluster.creds_dir
        return self.nats.auth_dir / "creds"

    def creds(self, user: str = "admin") -> Path:
        return self.creds_dir / f"{user}.creds"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def client(
        self, api: str | None = None, *, key: str | None = None, timeout: float = 30.0
    ) -> httpx.Client:
        """An HTTP client of one gateway (default: the first) that sends ``key`` (default: admin)."""
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=api or self.api, timeout=timeout, headers=headers, verify=tls_context())

    def data_dir(self, name: str) -> Path:
        # A gateway and its projector share the read model; each runner has its own work space.
        if name.startswith(("gateway", "projector")):
            return self.root / f"web{name.removeprefix('gateway').removeprefix('projector')}"
        return self.root / name

    def start(self, name: str) -> None:
        if name == "nats":
            self.nats.start()
            return
        if self.nats_cluster is not None and name in self.nats_cluster.names:
            self.nats_cluster.start(name)
            return
        self._write_admin_key()
        service = "runner" if name.startswith("runner") else name.rstrip("0123456789")
        env = self.env
        if name in self.health_ports:
            env = {**self.env, "CREWYARD_HEALTH_PORT": str(self.health_ports[name])}
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _SERVICE,
                service,
                str(self.data_dir(name)),
                self.nats_url,
                str(self.ports.get(name.replace("projector", "gateway"), self.port)),
                self.backend,
            ],
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        if self.nats_cluster is not None and name in self.nats_cluster.names:
            self.nats_cluster.kill(name)
            return
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
        if self.nats_cluster is not None and name in self.nats_cluster.names:
            self.nats_cluster.stop(name)
            return
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

    def _write_admin_key(self) -> None:
        """The operator's first admin key, given to every gateway (before any of them starts)."""
        if self.admin_key_file.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.admin_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self.admin_key + "\n")

    def up(self, timeout: float = 180.0) -> Cluster:
        self._write_admin_key()
        if self.nats_cluster is not None:
            self.nats_cluster.up()
        else:
            self.start("nats")
        for name in self.names:
            self.start(name)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 180.0) -> None:
        """Until every gateway answers 200 on /readyz."""
        self.wait_ready(list(self.ports), timeout)

    def wait_ready(self, names: list[str] | None = None, timeout: float = 180.0) -> None:
        """Until every service in ``names`` (default: all) answers 200 on /readyz; if one does not
        in time, the error shows its last answer and what its log said last."""
        waiting = list(names or self.names)
        deadline = time.monotonic() + timeout
        last = "no answer"
        while waiting:
            try:
                answer = self.readyz(waiting[0])
                if answer.status_code == 200:
                    waiting.pop(0)
                    last = "no answer"
                    continue
                last = f"{answer.status_code} {answer.text[:1000]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not ready: {', '.join(waiting)}; /readyz of {waiting[0]}: {last}\n"
                    f"{self.log_tail(waiting[0])}"
                )
            time.sleep(0.1)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def down(self) -> None:
        for name in reversed(self.names):
            self.stop(name)
        if self.nats_cluster is not None:
            self.nats_cluster.down()
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
