"""The subject scheme: ``crewyard.evt.<project>.<aggregate>.<aggregate_id>.<type>``.

``type`` may itself contain dots (``tool.called``), so an aggregate's events are matched with
``crewyard.evt.<project>.<aggregate>.<id>.>``. Project names and ids never contain ``.``, ``*``,
``>`` or spaces, which :func:`check_project_name` enforces at the boundary.
"""

from __future__ import annotations

import re

from crewyard.errors import CrewyardError

PREFIX = "crewyard.evt"
AGGREGATES = ("project", "deployment", "run", "webhook", "delivery", "trigger", "schedule", "table")
#: Project names, and the tokens of a subject that ids and event ids may use: never ``.``,
#: ``*``, ``>``, spaces or line breaks. Matched against the whole string (``fullmatch``).
PROJECT_PATTERN = r"[a-z0-9][a-z0-9_-]{0,62}"
TOKEN_PATTERN = r"[A-Za-z0-9_-]{1,128}"
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
    project: str, aggregate: str, aggregate_id: str, event_type: str, prefix: str = PREFIX
) -> str:
    return f"{prefix}.{project}.{aggregate}.{aggregate_id}.{event_type}"


def aggregate_filter(project: str, aggregate: str, aggregate_id: str, prefix: str = PREFIX) -> str:
    """All events of one aggregate (used for loads and the concurrency check)."""
    return f"{prefix}.{project}.{aggregate}.{aggregate_id}.>"


def any_project_aggregate_filter(aggregate: str, aggregate_id: str, prefix: str = PREFIX) -> str:
    """All events of one aggregate when its project is not known (ids are globally unique)."""
    return f"{prefix}.*.{aggregate}.{aggregate_id}.>"


def type_filter(event_type: str, aggregate: str, prefix: str = PREFIX) -> str:
    """Every event of one type, across projects: e.g. all ``run.queued``."""
    return f"{prefix}.*.{aggregate}.*.{event_type}"


def all_events(prefix: str = PREFIX) -> str:
    return f"{prefix}.>"


def parse_subject(subject: str, prefix: str = PREFIX) -> tuple[str, str, str, str]:
    """Split a subject into ``(project, aggregate, aggregate_id, type)``; ValueError if it is not
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
