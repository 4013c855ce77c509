"""Bounds on every value the platform stores, in one place.

The event codec refuses what lies outside them (an event that breaks one does not decode), so a
writer checks before it appends and the gateway answers 400 naming the limit instead of storing
something its own readers would choke on. The numeric bounds are ``msgspec.Meta`` annotations on
the payload types (checked in C while decoding); free-form JSON (inputs, outputs, configs) is
walked by :func:`check_json`, which bounds nesting depth and integer size.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from crewyard.errors import CrewyardError

#: Deeper JSON is refused everywhere: decoders recurse, and a depth near the interpreter's
#: recursion limit would decode in one call stack and fail in another (rebuild ≠ live).
MAX_JSON_DEPTH = 64
#: Integers must fit in 64 bits (signed or unsigned), as in every JSON decoder we serve.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: Counts, sizes and durations are stored in SQLite INTEGER columns (signed 64-bit).
COUNT_MAX = 2**63 - 1
#: Longest run timeout accepted (30 days); longer is a typo, or an attack on the scheduler.
MAX_TIMEOUT_S = 30 * 24 * 3600.0
#: Most runs of one project or deployment at once.
MAX_CONCURRENCY = 100_000
#: The attempt counter of a run (retries are bounded far below this).
MAX_ATTEMPTS = 10_000
#: The longest path (in characters) an artifact's name may be.
MAX_ARTIFACT_NAME = 4096
#: The longest value (in characters) an environment variable may have, set by the API or in
#: crewyard.toml (Linux takes at most 128 KiB for one variable: over that, no run would start).
MAX_ENV_VALUE = 32 * 1024

Count = Annotated[int, msgspec.Meta(ge=0, le=COUNT_MAX)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)]
Concurrency = Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)]
Timeout = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)]
Delay = Annotated[float, msgspec.Meta(ge=0, le=MAX_TIMEOUT_S)]
# Patterns are JSON Schema (ECMA) compatible for the AsyncAPI document; msgspec matches them with
# ``re.search``, where ``$`` also accepts a final newline, so a max_length closes that gap.
Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$", max_length=64)]
SourceDigest = Annotated[str, msgspec.Meta(pattern="^sha256-[0-9a-f]{64}$", max_length=71)]
#: A path relative to the run's artifacts folder: no control characters (names reach headers
#: and terminals), no absolute path, no ``..`` component.
#: A media type: printable ASCII only (it becomes a response header).
ContentType = Annotated[str, msgspec.Meta(pattern=r"^(?![\s\S]*[^\x20-\x7e])", min_length=1, max_length=255)]
ArtifactName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(?![\s\S]*[\x00-\x1f\x7f])(?!/)(?![\s\S]*(^|/)\.\.(/|$))",
        min_length=1,
        max_length=MAX_ARTIFACT_NAME,
    ),
]

#: A deployment's name (``[deployments.<name>]``; ``default`` for a single ``[deployment]``).
DeploymentName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]*$", max_length=63)]
#: The environments a deployment's versions are chosen through.
EnvironmentName = Literal["production", "staging"]


class OutOfBounds(CrewyardError, ValueError):
    """A value outside the bounds above; the message names the limit."""


def check_json(value: Any, what: str = "value", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`OutOfBounds` if ``value`` nests deeper than ``max_depth`` or holds an integer
    that does not fit in 64 bits. Walks level by level (no recursion, so any depth is measured);
    meant for decoded JSON (plain dicts and lists), where it costs about as much as decoding."""
    level, depth = [value], 0
    while level:
        depth += 1
        deeper: list[Any] = []
        for node in level:
            kind = type(node)
            if kind is dict:
                items = node.values()
            elif kind is list or kind is tuple:
                items = node
            else:
                if kind is int and not INT_MIN <= node <= INT_MAX:
                    raise OutOfBounds(f"{what} holds an integer that does not fit in 64 bits")
                continue
            if depth > max_depth:
                raise OutOfBounds(f"{what} is nested deeper than {max_depth} levels")
            for item in items:
                kind = type(item)
                if kind is dict or kind is list or kind is tuple:
                    deeper.append(item)
                elif kind is int and not INT_MIN <= item <= INT_MAX:
                    raise OutOfBounds(f"{what} holds an integer that does not fit in 64 bits")
        level = deeper
