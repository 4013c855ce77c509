"""The root of every error crewyard raises on purpose.

Each library keeps its own small hierarchy (``EventStoreError``, ``ObjectStoreError``,
``BackendError``, ``CrewConfigError`` …) and translates foreign errors at its boundary; all of
them derive from :class:`CrewyardError`. So a caller that only wants "an expected failure with
a message a person can read" — the CLI printing one red line, a service logging a start-up
failure — catches one class, and anything else is a bug. Pure: no imports, usable by the core.
"""

from __future__ import annotations

__all__ = ["CrewyardError"]


class CrewyardError(Exception):
    """An expected failure; ``str(error)`` is a message meant for the person who caused or meets it."""
