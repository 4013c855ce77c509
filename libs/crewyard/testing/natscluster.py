"""A NATS cluster with JetStream on loopback, for multi-node tests: nodes ``nats1``…``natsN`` made
from the same settings as ``deploy/nats/cluster.conf`` (one cluster name, routes to every node
with a route password, a JetStream store per node, operator mode with one trust chain: clients
need the credentials in ``creds_dir``), on free ports that stay the same when a node is started
again."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import nats

from crewyard.auth import Names, load_or_create, write_material
from crewyard.natsserver import nats_server_binary
from crewyard.testing.platform import free_port

_CONF = """\
server_name: {name}
listen: 127.0.0.1:{client}
http: 127.0.0.1:{monitor}
{auth}

jetstream {{
  store_dir: "{store}"
  max_file_store: 2GB
  max_memory_store: 256MB
}}

cluster {{
  name: crewyard
  listen: 127.0.0.1:{route}
  authorization {{ user: route, password: "{password}" }}
  routes: [
{routes}
  ]
}}
"""


class NatsCluster:
    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.root = root
        self.names = [f"nats{i}" for i in range(1, nodes + 1)]
        self.ports = {
            n: {"client": free_port(), "monitor": free_port(), "route": free_port()} for n in self.names
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.auth_dir = root / "auth"
        self._trust = load_or_create(self.auth_dir)
        write_material(self.auth_dir, self._trust, Names())
        self._password = secrets.token_hex(16)

    @property
    def creds_dir(self) -> Path:
        return self.auth_dir / "creds"

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as services are given a cluster's seed URLs."""
        return ",".join(f"nats://127.0.0.1:{p['client']}" for p in self.ports.values())

    def _conf(self, name: str) -> Path:
        routes = "\n".join(
            f"    nats-route://route:{self._password}@127.0.0.1:{p['route']}" for p in self.ports.values()
        )
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "server.conf"
        auth = self._trust.server_config(folder / "jwt")
        conf.write_text(
            _CONF.format(
                name=name,
                store=folder / "store",
                routes=routes,
                auth=auth,
                password=self._password,
                **self.ports[name],
            )
        )
        return conf

    def start(self, name: str) -> None:
        conf = self._conf(name)
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def healthy(self, name: str) -> bool:
        """The node answers and its JetStream is current (a leader is known, it caught up)."""
        url = f"http://127.0.0.1:{self.ports[name]['monitor']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(json.load(r).get("status") == "ok")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, names: list[str] | None = None, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        for name in names or self.names:
            while not self.healthy(name):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"NATS node {name} did not become healthy; see {self.root}/{name}.log")
                time.sleep(0.2)

    def up(self) -> NatsCluster:
        for name in self.names:
            self.start(name)
        self.wait_healthy()
        return self

    def down(self) -> None:
        for name in self.names:
            self.stop(name)

    def stream_leader(self, stream: str, timeout: float = 60.0) -> str:
        """The node leading ``stream`` now (asked of the cluster; waits for an election)."""

        async def ask() -> str:
            nc = await nats.connect(
                self.url.split(","),
                connect_timeout=2,
                max_reconnect_attempts=2,
                user_credentials=str(self.creds_dir / "admin.creds"),
            )
            try:
                info = await nc.jetstream(timeout=5).stream_info(stream)
                leader = info.cluster.leader if info.cluster else None
                if not leader:
                    raise RuntimeError(f"stream {stream} has no leader")
                return str(leader)
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout
        while True:
            try:
                return asyncio.run(ask())
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
