"""What a run's sandbox is made of, read from the stream: its environment variables, its spec, and
the fingerprint that says whether a warm sandbox was prepared the same way.

A run's fingerprint covers everything that decides what its crew sees before its input: the
version (its source and built environment or image), the crew's config, the environment
variables (values included), the limits. It is an HMAC under a key of this process, so a
fingerprint says nothing about the values. Two runs with the same fingerprint would be started
identically; that is what lets a run take a sandbox that was prepared before it arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from crewyard.core import envnames
from crewyard.core.crewfile import CrewConfig
from crewyard.core.deployment_state import READY, DeploymentState, fold_deployment, fold_project
from crewyard.environments import BuildFailed, EnvironmentStore
from crewyard.eventstore import EventStore
from crewyard.secrets import SecretBox
from crewyard.settings import Settings
from crewyard.workspace import Workspace

from .backends import ExecutionBackend, Limits, RunSpec
from .execution import limits_for
from .pools import Pool, PoolKey, Renewal
from .warm import WarmSandbox

_KEY = os.urandom(32)


class Prepared(NamedTuple):
    """A run's environment variables (those applied), the names refused, and the values to
    redact from its logs."""

    env: dict[str, str]
    refused: list[str]
    secrets: list[str]


class Warmth(NamedTuple):
    """The run's pool, its fingerprint, the warm sandbox it took (None: none), and whether it
    is forked from its pool's fork server instead (else: a cold start)."""

    key: PoolKey
    fingerprint: str
    sandbox: WarmSandbox | None
    forked: bool = False


_encoder = msgspec.msgpack.Encoder(order="sorted")


def fingerprint(deployment_id: str, dep: DeploymentState, config: CrewConfig, env: dict[str, str],
                limits: Limits) -> str:  # fmt: skip
    material = _encoder.encode(
        [
            deployment_id,
            dep.source_digest,
            dep.env_digest,
            dep.env_sha256,
            dep.image,
            msgspec.to_builtins(config),
            env,
            msgspec.to_builtins(limits),
        ]
    )
    return hmac.new(_KEY, material, hashlib.sha256).hexdigest()


class Specs:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        secrets: SecretBox,
        workspace: Workspace,
        environments: EnvironmentStore,
        backend: ExecutionBackend,
        runner_id: str,
        max_output: int,
        *,
        work_dir: Path,
    ) -> None:
        self.settings, self.store, self.secrets = settings, store, secrets
        self.workspace, self.environments, self.backend = workspace, environments, backend
        self.runner_id, self.max_output = runner_id, max_output
        self.work_dir = work_dir  # this runner process's own (workfolders.py)

    async def environment(self, project: str, environment: str, config: CrewConfig) -> dict[str, str]:
        """The crew's defaults, then the project's values for the run's environment."""
        proj = fold_project(project, await self.store.load(project, "project", project, current=True))
        env = dict(config.env)
        for key, (token, sealed) in proj.env_for(environment).items():
            env[key] = self.secrets.decrypt(project, sealed, token)
        return env

    def limits(self, config: CrewConfig) -> Limits:
        return limits_for(
            config, allow_host_network=self.settings.allow_host_network, max_output_bytes=self.max_output
        )

    def pool_size(self, config: CrewConfig) -> tuple[int, int]:
        """How many warm sandboxes the deployment keeps ready, and the most it may keep."""
        high = self.settings.warm_max
        low = self.settings.warm_default if config.warm is None else min(config.warm, high)
        return low, high

    async def spec(
        self,
        *,
        run_id: str,
        deployment_id: str,
        dep: DeploymentState,
        config: CrewConfig,
        env: dict[str, str],
        input: dict[str, Any],
    ) -> RunSpec:
        """The spec a run (or a warm sandbox) starts from; fetches source and environment once."""
        image = dep.image
        if self.backend.artifact_kind == "image" and not image:
            raise BuildFailed(
                f"deployment {deployment_id} has no container image (it was built with the venv"
                " backend); redeploy it with the docker build backend to run it on the docker backend"
            )
        source_dir = await self.workspace.source(dep.source_digest)
        venv_dir = None
        if self.backend.artifact_kind == "venv":
            # Exactly the environment the builder built and recorded (never resolved again here).
            if not dep.env_digest or not dep.env_sha256:
                raise BuildFailed(
                    f"deployment {deployment_id} has no recorded environment (built as a container"
                    " image, or by an older version); deploy the crew again to run it on this backend"
                )
            venv_dir = await self.environments.fetch(dep.env_digest, dep.env_sha256)
        work = self.work_dir / run_id
        return RunSpec(
            run_id=run_id,
            project=dep.project,
            deployment_id=deployment_id,
            runner_id=self.runner_id,
            framework=config.framework,
            entrypoint=config.entrypoint,
            input=input,
            env=env,
            source_dir=source_dir,
            runtime_dir=self.workspace.runtime_dir(),
            venv_dir=venv_dir,
            image=image,
            work_dir=work,
            artifacts_dir=work / "artifacts",
            limits=self.limits(config),
        )

    async def renewal(self, pool: Pool) -> Renewal | None:
        """A pool's template and fingerprint read again from the stream, for the version its
        environment runs now (``pool.moving_to`` after a deploy, promote or rollback); None when
        that version cannot run (then the pool is dropped)."""
        key = pool.moving_to or pool.key
        history = await self.store.load(pool.project, "deployment", key.deployment_id)
        dep = fold_deployment(key.deployment_id, history)
        if dep.status != READY:
            return None
        config = msgspec.convert(dep.config, CrewConfig)
        env, _ = envnames.split(await self.environment(pool.project, key.environment, config))
        template = await self.spec(
            run_id="warm_template", deployment_id=key.deployment_id, dep=dep, config=config, env=env, input={}
        )
        return Renewal(
            PoolKey(*key), template, fingerprint(key.deployment_id, dep, config, env, template.limits)
        )
