"""The ``docker`` backend: a fresh container per run, on any engine speaking the Docker API.

Tested against rootful Podman's Docker-compatible service (4.3, runc, cgroup v1); written for
Docker Engine too. Per run: a container from the deployment's image running the crew's runtime
(``python3 -m crewyard_runtime``, or the Node runtime for a JavaScript crew) as the sandbox's
uid (``CREWYARD_SANDBOX_UID``, no account's: on a rootful engine the container's uid is the
host's, ``crewyard.sandboxuid``) behind a tiny init (so SIGTERM reaches the crew and orphans are
reaped), no capabilities, ``no-new-privileges``, a read-only root file system, a private tmpfs
``/tmp``, memory (no swap) / CPU / pids / file-size limits, and the network its limits ask for
(:mod:`._container_net`).
``/app/artifacts`` (the working directory) is a named volume of the run's own, because a tmpfs is
gone the moment the container stops. Once the run is over, a root runner on the engine's machine
reads the volume's folder where the engine keeps it; otherwise the artifacts are copied out with
``get_archive`` (checked on the way: :mod:`._artifacts`).

The container's configuration holds nothing of the crew's: its environment is the fixed
:func:`runtime_env` (what ``docker inspect`` shows), and the crew's variables, entrypoint and
input reach the runtime through its stdin (the protocol's ``prepare`` and ``start``), written
on the attach connection once the container's network is ready.

The docker SDK is synchronous. Short calls run through ``asyncio.to_thread``; the two calls that
block for the whole run (the attach stream and ``wait``) get a thread of their own each, so ten
concurrent runs cannot starve the event loop's small default executor.

Containers and volumes carry the labels ``crewyard.run_id``, ``crewyard.runner_id`` and
``crewyard.owner`` (the runner process). If the runner dies, its reaper (``crewyard.reaper``) removes the
containers of that process at once, when the engine is on a local socket;
:meth:`DockerBackend.cleanup_orphans` removes those of one runner id: a runner keeps its id across
restarts (``runner/identity.py``), so at start-up it removes what its dead predecessor left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import threading
from typing import Any

import docker
import docker.errors
from docker.types import Ulimit

from crewyard import cgroups, privatenet, sandboxuid
from crewyard.core.entrypoints import runtime_of
from crewyard.reaper import LABEL_OWNER, Reaper, local_socket

from . import _container_net
from ._artifacts import DEFAULT_MAX_FILE, DEFAULT_MAX_TOTAL
from ._base import (
    ARTIFACTS_IN_CONTAINER,
    RUN_NOFILE,
    SHM_BYTES,
    SOURCE_IN_CONTAINER,
    BackendError,
    BackendUnavailable,
    RunSpec,
    opening,
    runtime_command,
    runtime_env,
)
from ._docker_handle import DockerHandle
from ._engine import ENGINE_ERRORS, connect, translate_errors

RUNTIME_IN_IMAGE = "/opt/crewyard"  # where the build puts the crewyard_runtime package
VENV_IN_IMAGE = "/opt/venv"  # where the build installs the crew's dependencies
LABEL_RUN = "crewyard.run_id"
LABEL_RUNNER = "crewyard.runner_id"
_NAME_RE = re.compile(r"[^a-zA-Z0-9_.-]")


class DockerBackend:
    name = "docker"
    isolated = True
    artifact_kind = "image"

    def __init__(
        self,
        docker_host: str | None = None,
        *,
        artifact_max_file_bytes: int = DEFAULT_MAX_FILE,
        artifact_max_total_bytes: int = DEFAULT_MAX_TOTAL,
        tmp_size_bytes: int = 512 * 1024 * 1024,
        nofile: int = RUN_NOFILE,
        nproc: int = 4096,
        network_policy: privatenet.NetworkPolicy | None = None,
        engine_network: str | None = None,
        user_uid: int = sandboxuid.DEFAULT,
    ) -> None:
        self.docker_host = docker_host
        #: The crew's uid (and gid) in its container, which is the host's on a rootful engine.
        self.user_uid = user_uid
        self.network_policy = network_policy or privatenet.NetworkPolicy()
        #: An engine network the operator has firewalled, used instead of a private stack.
        self.engine_network = engine_network
        self._nofile = nofile
        self._nproc = nproc
        self.artifact_caps = (artifact_max_file_bytes, artifact_max_total_bytes)
        self._tmp_size = tmp_size_bytes
        #: Whether a run's volume may be read where the engine keeps it (an engine on a local
        #: socket, a root runner that can read whatever uid the crew wrote as) rather than copied
        #: out with ``get_archive``; each run still checks the folder is on this host.
        self.volumes_here = local_socket(docker_host) is not None and os.geteuid() == 0
        self._client: docker.DockerClient | None = None
        self._engine = ""
        self._lock = threading.Lock()

    def api(self) -> docker.APIClient:
        """The low-level client, connected on first use (blocking: call from a thread)."""
        if (wrong := sandboxuid.problem(self.user_uid)) is not None:
            raise BackendUnavailable(wrong)
        with self._lock:
            if self._client is None:
                self._client, self._engine = connect(self.docker_host)
            return self._client.api

    def describe(self) -> str:
        """Which engine answers, e.g. ``Podman 4.3.1 at …``; raises BackendUnavailable."""
        api = self.api()
        with translate_errors("ask the container engine"):
            api.ping()  # the client may be older than the engine's last restart
        where = self.docker_host or "DOCKER_HOST"
        return f"{self._engine} at {where}"

    def _volume_options(self) -> dict[str, str]:
        self.api()
        # Podman can create the volume owned by the crew's uid. Docker's local driver cannot
        # without a device, but copies the image's /app/artifacts into it (which the image
        # leaves writable to any uid: the volume is the run's own).
        uid = self.user_uid
        return {"o": f"uid={uid},gid={uid}"} if self._engine.startswith("Podman") else {}

    def _create_and_start(self, spec: RunSpec) -> tuple[str, str, Any, privatenet.PrivateNetwork | None]:
        api = self.api()
        assert spec.image is not None
        limits = spec.limits
        suffix = f"{_NAME_RE.sub('_', spec.run_id)[:80]}-{secrets.token_hex(3)}"
        owner = cgroups.owner_tag()
        socket = local_socket(self.docker_host)
        if socket:
            Reaper.ensure(owner, socket)  # before the container exists: see crewyard.reaper
        labels = {
            LABEL_RUN: spec.run_id,
            LABEL_RUNNER: spec.runner_id,
            LABEL_OWNER: owner,
            "crewyard.deployment_id": spec.deployment_id,
        }
        env = runtime_env(
            spec,
            artifacts_dir=ARTIFACTS_IN_CONTAINER,
            pythonpath=f"{RUNTIME_IN_IMAGE}:{SOURCE_IN_CONTAINER}",
        )
        env["PATH"] = f"{VENV_IN_IMAGE}/bin:{env['PATH']}"
        if runtime_of(spec.framework) == "node":
            env["PATH"] = f"{VENV_IN_IMAGE}/node_modules/.bin:{env['PATH']}"
        command = runtime_command(
            spec, python="python3", node="node", runtime_dir=RUNTIME_IN_IMAGE, env_dir=VENV_IN_IMAGE,
            source_dir=SOURCE_IN_CONTAINER,
        )  # fmt: skip
        # Podman drops its configured default ulimits once a request names any, and its own
        # defaults (nofile 1048576, nproc 4194304) are above these hosts' hard limits: name them.
        # nproc counts every process of the crews' uid on the host; the pids limit is the per-run cap.
        ulimits = [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=self._nofile, hard=self._nofile),
            Ulimit(name="nproc", soft=self._nproc, hard=self._nproc),
        ]
        if limits.file_size_bytes:
            ulimits.append(Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes))
        network = _container_net.NetworkChoice(spec, self.network_policy, self.engine_network)
        volume = f"crewyard-{suffix}"
        container_id: str | None = None
        with translate_errors(f"start run {spec.run_id}"):
            api.create_volume(volume, driver="local", driver_opts=self._volume_options(), labels=labels)
            try:
                host_config = api.create_host_config(
                    binds={volume: {"bind": ARTIFACTS_IN_CONTAINER, "mode": "rw"}, **network.binds},
                    tmpfs={"/tmp": f"rw,nosuid,nodev,size={self._tmp_size},mode=1777"},
                    shm_size=SHM_BYTES,
                    read_only=True,
                    cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    init=True,
                    network_mode=network.mode,
                    mem_limit=limits.memory_bytes or 0,
                    memswap_limit=limits.memory_bytes or 0,  # equal to memory: no swap
                    # At least 1% of a CPU, as the cgroup path gives: 0 would mean no limit at all.
                    nano_cpus=max(int(limits.cpus * 1e9), 10_000_000) if limits.cpus else 0,
                    pids_limit=limits.pids or 0,
                    ulimits=ulimits,
                )
                created = api.create_container(
                    spec.image,
                    command,
                    name=f"crewyard-{suffix}",
                    user=f"{self.user_uid}:{self.user_uid}",
                    environment=env,
                    stdin_open=True,
                    working_dir=ARTIFACTS_IN_CONTAINER,
                    labels=labels,
                    host_config=host_config,
                )
                container_id = str(created["Id"])
                # Attach before start, so not one byte of output is lost (attaching after start
                # misses what came first on Podman, even with logs=True); stdin too, for the
                # protocol's messages to the runtime.
                stream = api.attach_socket(
                    container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1, "logs": 1}
                )
                with contextlib.suppress(AttributeError, OSError):
                    stream._sock.settimeout(None)  # the client's request timeout must not end a run
                api.start(container_id)
                private = network.connect(api, container_id, spec)
            except BaseException:
                with contextlib.suppress(*ENGINE_ERRORS):
                    if container_id:
                        api.remove_container(container_id, force=True, v=True)
                    api.remove_volume(volume, force=True)
                raise
        return container_id, volume, stream, private

    async def start(self, spec: RunSpec) -> DockerHandle:
        if not spec.image:
            raise BackendError("docker backend needs the deployment's image")
        spec.artifacts_dir.mkdir(parents=True, exist_ok=True)
        handle = DockerHandle(self, spec, *await asyncio.to_thread(self._create_and_start, spec))
        handle.send_soon(opening(spec, linger=True))
        return handle

    def _cleanup_blocking(self, runner_id: str) -> int:
        api = self.api()
        removed = 0
        with translate_errors("clean up orphaned runs"):
            # Filter on the value too: the engine then looks at no other container (listing every
            # container fails while any one of them, anyone's, is in a broken state).
            mine = {"label": f"{LABEL_RUNNER}={runner_id}"}
            for c in api.containers(all=True, filters=mine):
                if (c.get("Labels") or {}).get(LABEL_RUNNER) == runner_id:
                    with contextlib.suppress(docker.errors.NotFound):
                        api.remove_container(c["Id"], force=True, v=True)
                        removed += 1
            for v in api.volumes(filters=mine).get("Volumes") or []:
                if (v.get("Labels") or {}).get(LABEL_RUNNER) == runner_id:
                    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                        api.remove_volume(v["Name"], force=True)
        return removed

    async def cleanup_orphans(self, runner_id: str) -> int:
        if not runner_id:
            raise BackendError("cleanup_orphans needs a runner id")
        return await asyncio.to_thread(self._cleanup_blocking, runner_id)
