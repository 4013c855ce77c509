"""Which version a run runs, read from the stream: for services without a read model (the
scheduler, the runner) and for decisions that must see every event (promote, rollback).

The rules are the core's (:mod:`crewyard.core.versions`); the gateway applies the same rules to
its read model (:meth:`crewyard.readmodel.ReadModel.resolve_version`) on the hot path. A
project's versions and pointers are one batch read: every event whose type is a two-token
``deployment.*`` (created, ready, failed, promoted — never the chatty build logs).

A decision that moves a pointer reads them with :func:`read_versions`: a current read (never a
replica that is behind), with the sequence it ended at and the subjects it covered, so that its
append expects exactly that view and a version or pointer that changed meanwhile (a promotion
through another gateway, a version becoming ready) is a ``ConcurrencyConflict``.
"""

from __future__ import annotations

import msgspec

from crewyard.core import subjects
from crewyard.core import versions as core
from crewyard.core.deployment_state import fold_deployment
from crewyard.core.events import InvalidEvent, Recorded
from crewyard.core.ids import deployment_id as stored_id
from crewyard.eventstore import EventStore, RawEvent, set_aside

__all__ = ["VersionsView", "load_versions", "read_versions", "resolve_version"]


class VersionsView(msgspec.Struct, frozen=True):
    """A project's versions and pointers as one read saw them: ``seq`` is the last event read
    (0: none), ``over`` the subjects read. An append decided on the view expects ``seq`` over
    ``over``."""

    state: core.Versions
    seq: int
    over: str


async def load_versions(store: EventStore, project: str) -> core.Versions:
    """The project's versions and environment pointers, folded from the stream (any replica)."""
    return _fold(store, project, await store.load_raw(subjects.versions_filter(project, store.prefix)))


async def read_versions(store: EventStore, project: str) -> VersionsView:
    """The project's versions and pointers as the stream has them now, to decide on: a current
    read, with where it ended and what it covered (see :class:`VersionsView`)."""
    over = subjects.versions_filter(project, store.prefix)
    raws = await store.load_raw_current(over)
    return VersionsView(_fold(store, project, raws), raws[-1].seq if raws else 0, over)


def _fold(store: EventStore, project: str, raws: list[RawEvent]) -> core.Versions:
    history: list[Recorded] = []
    for raw in raws:
        try:
            history.append(raw.decode(store.prefix))
        except InvalidEvent as exc:
            set_aside("versions", raw.seq, raw.subject, exc)
    return core.fold(project, history)


async def resolve_version(
    store: EventStore,
    *,
    project: str | None = None,
    deployment_id: str | None = None,
    name: str | None = None,
    environment: str | None = None,
) -> core.Resolved:
    """The version a run of ``project`` (or of ``deployment_id``, ``dep_…`` or ``ver_…``) runs:
    ``deployment_id`` alone is exactly that version; with ``environment``, that environment's
    version of its name; else ``name`` (default: the project's default name) in ``environment``
    (default: production). Raises a :class:`crewyard.core.versions.VersionError` (its ``kind``
    says not_found / conflict / bad_request) when there is nothing to run."""
    core.check_environment(environment)
    dep_id = stored_id(deployment_id) if deployment_id else None
    if dep_id is not None:
        owner = fold_deployment(dep_id, await store.load_any("deployment", dep_id)).project
        if not owner or (project is not None and owner != project):
            raise core.UnknownVersion(f"deployment {deployment_id} not found")
        project = owner
    if project is None:
        raise core.UnknownDeployment("give a project or a deployment_id")
    state = await load_versions(store, project)
    return core.resolve(state, deployment_id=dep_id, name=name, environment=environment)
