"""`crewyard nats init`: what a multi-machine setup's NATS nodes and services are given works."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner

from crewyard.cli import cli
from crewyard.eventstore import EventStore, StreamSettings, connect, ensure_stream
from crewyard.natsserver import nats_server_binary
from crewyard.testing.platform import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _init(directory: Path, *routes: str) -> None:
    args = ["nats", "init", str(directory), "--resolver-dir", str(directory / "jwt")]
    for route in routes:
        args += ["--route", route]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_secrets_are_readable_by_their_owner_only(tmp_path: Path):
    _init(tmp_path / "s", "nats-1:6222")
    secret_files = [tmp_path / "s" / n for n in ("trust.json", "issuer.json", "routes.conf")]
    secret_files += list((tmp_path / "s" / "creds").iterdir())
    assert {p.name for p in (tmp_path / "s" / "creds").iterdir()} == {
        f"{u}.creds" for u in ("admin", "gateway", "runner", "builder", "projector", "notifier", "scheduler")
    }
    for path in secret_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    server_conf = (tmp_path / "s" / "server-auth.conf").read_text()
    seeds = json.loads((tmp_path / "s" / "trust.json").read_text()).values()
    assert not any(seed in server_conf for seed in seeds)  # public JWTs only


def test_the_deploy_node_config_is_valid_with_what_init_writes(tmp_path: Path):
    _init(tmp_path / "s", "nats-1:6222", "nats-2:6222")
    conf = tmp_path / "conf"
    conf.mkdir()
    shutil.copy(REPO / "deploy" / "nats" / "cluster.conf", conf / "cluster.conf")
    shutil.copy(tmp_path / "s" / "server-auth.conf", conf / "auth.conf")
    shutil.copy(tmp_path / "s" / "routes.conf", conf / "routes.conf")
    result = subprocess.run(
        [nats_server_binary(), "-c", str(conf / "cluster.conf"), "-t"],
        env={**os.environ, "SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


async def test_a_node_configured_from_init_takes_each_service_and_refuses_strangers(tmp_path: Path):
    secrets = tmp_path / "s"
    _init(secrets)
    port = free_port()
    node = tmp_path / "node.conf"
    shutil.copy(secrets / "server-auth.conf", tmp_path / "auth.conf")  # includes are relative
    node.write_text(
        f'listen: 127.0.0.1:{port}\ninclude "auth.conf"\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    proc = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-c", str(node), stderr=subprocess.DEVNULL
    )
    url = f"nats://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert time.monotonic() < deadline and proc.returncode is None, "nats-server did not start"
            await asyncio.sleep(0.1)
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
        settings = StreamSettings()
        for service in ("gateway", "runner", "builder", "projector", "notifier", "scheduler"):
            nc = await connect(url, name=service, creds=secrets / "creds" / f"{service}.creds")
            store = EventStore(nc, settings)
            await ensure_stream(store.js, settings)
            assert await store.last_seq() == 0
            await nc.close()
        issuer = json.loads((secrets / "issuer.json").read_text())
        assert set(issuer) >= {"account_signing_seed", "system_user_creds"}
        assert "operator_seed" not in issuer  # the root key stays in trust.json
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
