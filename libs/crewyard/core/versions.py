"""Deployment names, their numbered versions, and the environments that point at them (pure).

A deployment is ``(project, name)``: a long-lived handle. Each deploy adds an immutable
**version** under its name (the ``deployment.created`` aggregate: ``dep_…``, also spelled
``ver_…``), numbered 1, 2, 3… per name in stream order — a number is a position, so it is never
stored and every fold (this one, the read model, a rebuild) counts the same. Each name has one
pointer per **environment** (``production``, ``staging``). A pointer moves only when someone said
so: a deploy names the environment it goes to (``deployment.created``'s ``environment``; the
pointer moves when that version becomes ready), a promotion copies or sets a pointer, a rollback
moves it back. Nothing is rebuilt.

Each pointer keeps a stack of the versions it held, so that a rollback without a target goes
back to what the environment ran before (a rollback pops; going forward pushes). Two rollbacks in
a row go back two steps, never back and forth.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import cast, get_args

import msgspec

from crewyard.errors import CrewyardError

from .bounds import EnvironmentName
from .events import (
    DeploymentCreated,
    DeploymentFailed,
    DeploymentPromoted,
    DeploymentReady,
    Recorded,
)
from .ids import version_id

ENVIRONMENTS: tuple[str, ...] = get_args(EnvironmentName)
PRODUCTION: EnvironmentName = "production"
DEFAULT_NAME = "default"
BUILDING, READY, FAILED = "building", "ready", "failed"


class VersionError(CrewyardError):
    """A deployment, version or environment request that cannot be met. ``kind`` says how:
    ``not_found``, ``conflict`` (exists but cannot be used as asked) or ``bad_request``;
    ``code`` is the API's error code."""

    kind = "conflict"
    code = "conflict"


class UnknownVersion(VersionError):
    kind = code = "not_found"


class UnknownDeployment(VersionError):
    kind = code = "not_found"


class VersionNotReady(VersionError):
    pass


class NoVersionInEnvironment(VersionError):
    pass


class AmbiguousDeployment(VersionError):
    pass


class InvalidEnvironment(VersionError):
    kind, code = "bad_request", "invalid_environment"


def check_environment(value: str | None) -> EnvironmentName:
    """``value`` as an environment name (None: production); :class:`InvalidEnvironment` if unknown."""
    if value is None:
        return PRODUCTION
    if value not in ENVIRONMENTS:
        raise InvalidEnvironment(f"unknown environment {value!r}: use {' or '.join(ENVIRONMENTS)}")
    return cast(EnvironmentName, value)


def choose_name(project: str, names: Collection[str], requested: str | None = None) -> str:
    """The deployment name a request means: the one asked for, else ``default``, else the only
    one; several without ``default`` is ambiguous (the message lists them)."""
    if requested is not None:
        if requested not in names:
            raise UnknownDeployment(f"project {project} has no deployment named {requested!r}")
        return requested
    if DEFAULT_NAME in names:
        return DEFAULT_NAME
    if len(names) == 1:
        return next(iter(names))
    if not names:
        raise NoVersionInEnvironment(f"project {project} has no deployment yet")
    listed = ", ".join(sorted(names))
    raise AmbiguousDeployment(
        f"project {project} has several deployments ({listed}) and none is called {DEFAULT_NAME!r};"
        " choose one with name (or a deployment_id)"
    )


class Version(msgspec.Struct, kw_only=True):
    id: str  # dep_…
    project: str
    name: str
    number: int
    status: str = BUILDING
    #: The environment the deploy was aimed at: its pointer moves here once ready.
    environment: EnvironmentName | None = PRODUCTION
    seq: int = 0

    @property
    def version_id(self) -> str:
        return version_id(self.id)


class Versions(msgspec.Struct, kw_only=True):
    """A project's versions and pointers, folded from its deployment and promotion events."""

    project: str
    versions: dict[str, Version] = msgspec.field(default_factory=dict)
    #: name → environment → the versions its pointer held, current last.
    stacks: dict[str, dict[str, list[str]]] = msgspec.field(default_factory=dict)
    counts: dict[str, int] = msgspec.field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.counts)

    def current(self, name: str, environment: str) -> Version | None:
        stack = self.stacks.get(name, {}).get(environment)
        return self.versions.get(stack[-1]) if stack else None

    def pointers(self, name: str) -> dict[str, str]:
        """environment → version id (``dep_…``) for the name's environments that have one."""
        return {env: stack[-1] for env, stack in self.stacks.get(name, {}).items() if stack}

    def _move(self, name: str, environment: str, dep_id: str, *, rollback: bool) -> None:
        stack = self.stacks.setdefault(name, {}).setdefault(environment, [])
        if rollback and dep_id in stack:
            del stack[len(stack) - stack[::-1].index(dep_id) :]
        elif not stack or stack[-1] != dep_id:
            stack.append(dep_id)


def evolve(state: Versions, rec: Recorded) -> Versions:
    data, event = rec.event.data, rec.event
    if event.project != state.project:
        return state
    if isinstance(data, DeploymentCreated):
        if event.aggregate_id in state.versions:
            return state
        number = state.counts.get(data.name, 0) + 1
        state.counts[data.name] = number
        state.versions[event.aggregate_id] = Version(
            id=event.aggregate_id,
            project=event.project,
            name=data.name,
            number=number,
            environment=data.environment,
            seq=rec.seq,
        )
    elif isinstance(data, DeploymentReady | DeploymentFailed):
        version = state.versions.get(event.aggregate_id)
        if version is None or version.status != BUILDING:
            return state
        version.status = READY if isinstance(data, DeploymentReady) else FAILED
        if version.status == READY and version.environment is not None:
            state._move(version.name, version.environment, version.id, rollback=False)
    elif isinstance(data, DeploymentPromoted):
        version = state.versions.get(data.deployment_id)
        if version is not None:
            state._move(version.name, data.environment, version.id, rollback=data.rollback)
    return state


def fold(project: str, history: list[Recorded]) -> Versions:
    state = Versions(project=project)
    for rec in sorted(history, key=lambda r: r.seq):
        evolve(state, rec)
    return state


class Resolved(msgspec.Struct, frozen=True, kw_only=True):
    """What a run runs: the version (``dep_…`` id), its name and number, and the environment
    it was chosen for (whose scoped environment variables apply)."""

    deployment_id: str
    project: str
    name: str
    number: int
    environment: EnvironmentName

    @property
    def version_id(self) -> str:
        return version_id(self.deployment_id)


def runnable(version: Version, environment: EnvironmentName) -> Resolved:
    """``version`` as what a run in ``environment`` runs; :class:`VersionNotReady` unless ready."""
    if version.status != READY:
        state = "failed to build" if version.status == FAILED else "is still building"
        raise VersionNotReady(f"deployment {version.id} (version {version.number}) {state}")
    return Resolved(
        deployment_id=version.id,
        project=version.project,
        name=version.name,
        number=version.number,
        environment=environment,
    )


def resolve(
    state: Versions,
    *,
    deployment_id: str | None = None,
    name: str | None = None,
    environment: str | None = None,
) -> Resolved:
    """The version a request runs. ``deployment_id`` alone: exactly that version (in
    production's name); with ``environment``: that environment's version of the same name.
    Otherwise ``name`` (or the project's default name, see :func:`choose_name`) in
    ``environment`` (production when not given)."""
    env = check_environment(environment)
    if deployment_id is not None:
        version = state.versions.get(deployment_id)
        if version is None:
            raise UnknownVersion(f"deployment {deployment_id} not found")
        if environment is None:
            return runnable(version, env)
        name = version.name
    chosen = choose_name(state.project, state.counts, name)
    current = state.current(chosen, env)
    if current is None:
        raise NoVersionInEnvironment(
            f"deployment {chosen} of project {state.project} has no version in {env} yet"
        )
    return runnable(current, env)


def decide_promote(
    state: Versions,
    name: str,
    *,
    to: str,
    from_environment: str | None = None,
    deployment_id: str | None = None,
) -> DeploymentPromoted:
    """Point ``to`` at ``from_environment``'s current version, or at ``deployment_id``."""
    target_env = check_environment(to)
    chosen = choose_name(state.project, state.counts, name)
    if (from_environment is None) == (deployment_id is None):
        raise InvalidEnvironment("give either from (an environment) or version_id, not both")
    source_env = None
    if from_environment is not None:
        source_env = check_environment(from_environment)
        if source_env == target_env:
            raise InvalidEnvironment(f"cannot promote {source_env} to itself")
        version = state.current(chosen, source_env)
        if version is None:
            raise NoVersionInEnvironment(f"deployment {chosen} has no version in {source_env} to promote")
    else:
        version = state.versions.get(deployment_id or "")
        if version is None or version.name != chosen:
            raise UnknownVersion(f"deployment {chosen} has no version {deployment_id}")
    runnable(version, target_env)
    previous = state.current(chosen, target_env)
    return DeploymentPromoted(
        deployment_id=version.id,
        previous_deployment_id=previous.id if previous else None,
        environment=target_env,
        name=chosen,
        from_environment=source_env,
    )


def decide_rollback(
    state: Versions, name: str, *, environment: str | None = None, deployment_id: str | None = None
) -> DeploymentPromoted:
    """Move ``environment``'s pointer back: to ``deployment_id``, or to the version it held
    before its current one."""
    env = check_environment(environment)
    chosen = choose_name(state.project, state.counts, name)
    stack = state.stacks.get(chosen, {}).get(env, [])
    current = stack[-1] if stack else None
    if deployment_id is None:
        if len(stack) < 2:
            raise NoVersionInEnvironment(
                f"{env} of deployment {chosen} has no earlier version to roll back to"
            )
        deployment_id = stack[-2]
    version = state.versions.get(deployment_id)
    if version is None or version.name != chosen:
        raise UnknownVersion(f"deployment {chosen} has no version {deployment_id}")
    runnable(version, env)
    return DeploymentPromoted(
        deployment_id=version.id,
        previous_deployment_id=current,
        rollback=True,
        environment=env,
        name=chosen,
    )
