"""The network of a run's container: ``none``, ``host``, or private (``default``).

``default`` means the same private network as a bwrap sandbox (:mod:`crewyard.privatenet`): the
container is created with network ``none``, and once it runs, its network namespace gets the
filtering routes and then a user-mode stack (``slirp4netns``) from the runner's side, before the
runtime receives ``prepare`` (until then no crew code is imported). ``/etc/resolv.conf`` is bound
to a file naming the stack's resolver. An engine's bridge network is not used: a container on it
reaches every address of its host (the platform's ports included).

That needs the engine on the runner's own machine (the runner enters the container's namespace
by the process id the engine reports, and checks that the process is that run's). With a remote
engine the operator names an engine network instead (``CREWYARD_DOCKER_NETWORK``) that they have
firewalled on the engine's host — see the backends' design note.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from crewyard import privatenet

from ._base import BackendError, RunSpec

RESOLV_IN_CONTAINER = "/etc/resolv.conf"
REMOTE_ENGINE = (
    "network 'default' on the docker backend needs the container engine on the runner's machine"
    " (each container gets a private network stack from here); with a remote engine set"
    " CREWYARD_DOCKER_NETWORK to an engine network you have firewalled (see the runner's design notes)"
)


class NetworkChoice:
    """What to ask the engine for, and whether a private stack is attached after start."""

    def __init__(self, spec: RunSpec, policy: privatenet.NetworkPolicy, engine_network: str | None) -> None:
        self.plan: privatenet.NetworkPlan | None = None
        self.binds: dict[str, dict[str, str]] = {}
        setting = spec.limits.network
        if setting in ("none", "host"):
            self.mode = setting
        elif setting != "default":
            raise BackendError(f"unknown network setting {setting!r}")
        elif engine_network:
            self.mode = engine_network
        else:
            self.mode = "none"
            try:
                self.plan = privatenet.plan(policy)
            except privatenet.NetworkError as exc:
                raise BackendError(f"cannot plan the container's network: {exc}") from exc
            resolv = spec.work_dir / "resolv.conf"
            resolv.parent.mkdir(parents=True, exist_ok=True)
            resolv.write_text(self.plan.resolv_conf)
            resolv.chmod(0o644)
            self.binds[str(resolv)] = {"bind": RESOLV_IN_CONTAINER, "mode": "ro"}

    def connect(self, api: Any, container_id: str, spec: RunSpec) -> privatenet.PrivateNetwork | None:
        """Attach the private stack to the started container (blocking); None when not private."""
        if self.plan is None:
            return None
        state = api.inspect_container(container_id).get("State") or {}
        pid = int(state.get("Pid") or 0)
        if pid <= 0:
            return None  # it has already exited: it needs no network any more
        if not _is_run(pid, container_id, spec.run_id):
            raise BackendError(REMOTE_ENGINE)
        try:
            return privatenet.attach_blocking(pid, self.plan)
        except privatenet.NetworkError as exc:
            raise BackendError(f"cannot give the container its network: {exc}") from exc


def _is_run(pid: int, container_id: str, run_id: str, patience_s: float = 5.0) -> bool:
    """True when local process ``pid`` is the run's container: its control group names the
    container, or its environment the run. The engine may report the pid of the runtime's init
    a moment before it becomes the container's process (exec pending), hence the patience."""
    deadline = time.monotonic() + patience_s
    while True:
        with contextlib.suppress(OSError):
            if container_id in Path(f"/proc/{pid}/cgroup").read_text():
                return True
            if f"CREWYARD_RUN_ID={run_id}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return True
        if time.monotonic() > deadline or not Path(f"/proc/{pid}").exists():
            return False
        time.sleep(0.05)
