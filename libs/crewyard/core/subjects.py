"""The subject scheme.

Two streams, two subject trees::

    crewyard.evt.<scope>.<aggregate>.<aggregate_id>.<type>      stream CREWYARD_EVENTS
    crewyard.platform.<aggregate>.<aggregate_id>.<type>         stream CREWYARD_PLATFORM

``<scope>`` is a project name for that project's own events: runs, deployments, the project
itself. Everything under ``crewyard.evt.<project>.>`` is safe to show to an outside consumer of
that project. Secret-bearing project events (``env.set`` — its value is encrypted, but still never
for outside eyes — and ``env.unset``) use the reserved scope ``_secret`` with the project as the
aggregate id: ``crewyard.evt._secret.project.acme.env.set``. Reserved scopes start with ``_``,
which a project name never does (:func:`check_project_name`).

The platform scope (API keys, external consumer credentials) is a stream of its own, so that
NATS permissions can keep every other user — runners included — away from it entirely.

``type`` may itself contain dots (``tool.called``), so an aggregate's events are matched with
``<prefix>.<scope>.<aggregate>.<id>.>``. Names and ids never contain ``.``, ``*``, ``>`` or spaces.

Streams written before this scheme keep ``env.*`` (and the never-used ``apikey.*``) events
under their project's scope; readers take both places at once (:func:`project_aggregate_filter`)
and the filters handed to outside consumers name the public types one by one
(:func:`consumer_filters`), so those old events never reach them either. The stream is never
rewritten.
"""

from __future__ import annotations

import re

from crewyard.errors import CrewyardError

PREFIX = "crewyard.evt"
PLATFORM_PREFIX = "crewyard.platform"
AGGREGATES = (
    "project",
    "deployment",
    "run",
    "webhook",
    "delivery",
    "trigger",
    "schedule",
    "table",
    "thread",
)
#: Project names, and the tokens of a subject that ids and event ids may use: never ``.``,
#: ``*``, ``>``, spaces or line breaks. Matched against the whole string (``fullmatch``).
PROJECT_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
TOKEN_PATTERN = r"[A-Za-z0-9_-]{1,128}"
#: The reserved scope of secret-bearing project events.
SECRET_SCOPE = "_secret"
#: The ``project`` of platform events' envelopes (never a project name either).
PLATFORM_SCOPE = "_platform"
RESERVED_SCOPES = (SECRET_SCOPE,)
_PROJECT_RE = re.compile(PROJECT_PATTERN)


class InvalidName(CrewyardError, ValueError):
    """A project name that cannot be part of a subject."""


def check_project_name(name: str) -> str:
    if not _PROJECT_RE.fullmatch(name):
        raise InvalidName(
            f"invalid project name {name!r}: use 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def event_subject(
    scope: str, aggregate: str, aggregate_id: str, event_type: str, prefix: str = PREFIX
) -> str:
    return f"{prefix}.{scope}.{aggregate}.{aggregate_id}.{event_type}"


def aggregate_filter(
    scope: str, aggregate: str, aggregate_id: str, prefix: str = PREFIX, types: str = ">"
) -> str:
    """All events of one aggregate within one scope (used for loads and the concurrency check);
    ``types``: only those of matching types (``run.*``: a run's lifecycle)."""
    return f"{prefix}.{scope}.{aggregate}.{aggregate_id}.{types}"


def project_aggregate_filter(project: str, prefix: str = PREFIX) -> str:
    """A project aggregate's events wherever they are stored: its own scope and the secret scope
    (``*`` here matches only those two, since only a project's own scope holds an aggregate
    ``project.<its name>``). Used to load it and for its concurrency check."""
    return f"{prefix}.*.project.{project}.>"


def versions_filter(project: str, prefix: str = PREFIX) -> str:
    """A project's versions and environment pointers: every event whose type is a two-token
    ``deployment.*`` (created, ready, failed on its versions; promoted on the project), never the
    chatty ``deployment.build.*``. What a promotion or rollback decides on, so also the subjects
    its append's expected sequence covers."""
    return f"{prefix}.{project}.*.*.deployment.*"


def any_project_aggregate_filter(
    aggregate: str, aggregate_id: str, prefix: str = PREFIX, types: str = ">"
) -> str:
    """All events of one aggregate when its project is not known (ids are globally unique)."""
    return f"{prefix}.*.{aggregate}.{aggregate_id}.{types}"


def type_filter(event_type: str, aggregate: str, prefix: str = PREFIX) -> str:
    """Every event of one type, across projects: e.g. all ``run.queued``."""
    return f"{prefix}.*.{aggregate}.*.{event_type}"


def project_filter(project: str, prefix: str = PREFIX) -> str:
    """Everything in a project's own scope (no secret-bearing event written since the scopes)."""
    return f"{prefix}.{project}.>"


def consumer_filters(project: str, public_project_types: list[str], prefix: str = PREFIX) -> list[str]:
    """What an outside consumer of ``project`` receives: its runs, deployments and threads
    (checkpoints included), and the project aggregate's public types by name (so that ``env.*``
    events that older streams keep under the project's scope never match)."""
    return [
        f"{prefix}.{project}.run.>",
        f"{prefix}.{project}.deployment.>",
        f"{prefix}.{project}.thread.>",
        *(f"{prefix}.{project}.project.{project}.{t}" for t in sorted(public_project_types)),
    ]


def all_events(prefix: str = PREFIX) -> str:
    return f"{prefix}.>"


def parse_subject(subject: str, prefix: str = PREFIX) -> tuple[str, str, str, str]:
    """Split a subject into ``(scope, aggregate, aggregate_id, type)``; ValueError if it is not
    an event subject (anyone who may publish into the stream can write any subject)."""
    rest = subject[len(prefix) + 1 :] if subject.startswith(prefix + ".") else None
    parts = rest.split(".", 3) if rest else []
    if len(parts) != 4:
        raise ValueError(f"not an event subject: {subject!r}")
    return parts[0], parts[1], parts[2], parts[3]


def event_type_of(subject: str, prefix: str = PREFIX) -> str | None:
    """The event type named by a subject, or None when the subject is not an event subject."""
    try:
        return parse_subject(subject, prefix)[3]
    except ValueError:
        return None


def platform_subject(
    aggregate: str, aggregate_id: str, event_type: str, prefix: str = PLATFORM_PREFIX
) -> str:
    return f"{prefix}.{aggregate}.{aggregate_id}.{event_type}"


def subject_for(
    scope_kind: str,
    project: str,
    aggregate: str,
    aggregate_id: str,
    event_type: str,
    prefix: str = PREFIX,
    platform_prefix: str = PLATFORM_PREFIX,
) -> str:
    """The subject of an event whose payload type has ``SCOPE == scope_kind``."""
    if scope_kind == "platform":
        return platform_subject(aggregate, aggregate_id, event_type, platform_prefix)
    scope = SECRET_SCOPE if scope_kind == "secret" else project
    return event_subject(scope, aggregate, aggregate_id, event_type, prefix)


def places_of(scope_kind: str, project: str, aggregate: str, aggregate_id: str, event_type: str) -> list[str]:
    """Where (after the stream's prefix) an event may be stored: where it is written today, and
    for secret-bearing and platform types also their project's own scope, where streams written
    before the scopes keep them."""
    tail = f"{aggregate}.{aggregate_id}.{event_type}"
    if scope_kind == "platform":
        return [tail, f"{project}.{tail}"]
    if scope_kind == "secret":
        return [f"{SECRET_SCOPE}.{tail}", f"{project}.{tail}"]
    return [f"{project}.{tail}"]


def platform_aggregate_filter(aggregate: str, aggregate_id: str, prefix: str = PLATFORM_PREFIX) -> str:
    return f"{prefix}.{aggregate}.{aggregate_id}.>"
