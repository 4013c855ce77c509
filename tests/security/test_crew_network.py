"""A crew's network is its own: a crew that connects to every listening TCP port of the host on
every one of the host's addresses (all interfaces, IPv4 and IPv6, as ``/proc/net`` and ``ip addr``
list them, loopback included), on the user-mode stack's host alias, and on the cloud metadata
address reaches none of them — so none of the platform's own ports either."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from crewyard import privatenet
from crewyard.testing.api import EXAMPLES, deploy, wait_run, write_crew
from crewyard.testing.platform import PlatformProcess

pytestmark = pytest.mark.timeout(600)

SCANNER = """
import errno, socket
from pathlib import Path

def _listening(path):
    ports = set()
    try:
        lines = Path(path).read_text().splitlines()[1:]
    except OSError:
        return ports
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":  # LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports

def run(inputs):
    ports = set(inputs["ports"]) | _listening("/proc/net/tcp") | _listening("/proc/net/tcp6")
    targets = [(a, p) for a in inputs["addresses"] for p in sorted(ports)] + [("169.254.169.254", 80)]
    reached, refused = [], {}
    for address, port in targets:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            try:
                s.connect((address, port) if family == socket.AF_INET else (address, port, 0, 0))
                reached.append(f"{address}:{port}")
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
                refused[name] = refused.get(name, 0) + 1
    return {"tried": len(targets), "reached": reached, "refused": refused}
"""


def _host_addresses() -> list[str]:
    """Every address of every interface of the host, as ``ip addr`` shows them (and fib_trie)."""
    shown = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True).stdout)
    found = {a["local"] for iface in shown for a in iface.get("addr_info", []) if a.get("local")}
    found |= {str(n.network_address) for n in privatenet.host_addresses()}
    found |= {"127.0.0.1", "10.0.2.2"}  # loopback, and the user-mode stack's alias for the host
    # Link-local IPv6 addresses need a scope id to be dialled at all; the global ones are kept.
    return sorted(a for a in found if not a.startswith("fe80:"))


def _host_listening_ports() -> set[int]:
    ports = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_a_crew_reaches_no_port_of_its_host(isolated_platform: PlatformProcess, tmp_path: Path) -> None:
    platform = isolated_platform
    project = f"scan-{platform.backend}"
    api_port = platform.port
    nats_port = int(platform.nats_url.rsplit(":", 1)[1])
    ports = _host_listening_ports()
    assert {api_port, nats_port} <= ports, "the platform's own ports must be among those tried"
    addresses = _host_addresses()
    with platform.client(timeout=60) as api:
        dep = deploy(api, write_crew(tmp_path / "scanner", SCANNER), project, timeout=600)
        assert dep["status"] == "ready", dep
        run_id = api.post(
            "/v1/runs", json={"project": project, "input": {"addresses": addresses, "ports": sorted(ports)}}
        ).json()["run_id"]
        run = wait_run(api, run_id, timeout=300)

        assert run["status"] == "succeeded", run
        result = run["output"]
        assert result["tried"] >= len(addresses) * len(ports), result
        assert result["reached"] == [], f"the crew reached the host: {result['reached']}"

        # The platform serves on.
        deploy(api, EXAMPLES / "hello", f"{project}-hello", timeout=600)
        again = api.post("/v1/runs", json={"project": f"{project}-hello"}).json()["run_id"]
        assert wait_run(api, again, timeout=120)["status"] == "succeeded"
