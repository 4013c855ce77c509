"""Bytes no crewyard writer produces, for tests that publish them straight into the stream.

Each entry is ``(subject, payload)`` aimed at one run of one project: garbage, huge numbers,
deep nesting, unknown types and versions, names with a trailing newline, a valid event on a
subject that contradicts it, and subjects of the wrong shape. Every reader must set each aside
and go on.
"""

from __future__ import annotations


def _envelope(event_type: str, aggregate: str, aggregate_id: str, data: str, **overrides: str) -> bytes:
    fields = {
        "id": '"evt_poison"',
        "type": f'"{event_type}"',
        "version": "1",
        "time": '"2026-01-01T00:00:00Z"',
        "project": '"{project}"',
        "aggregate": f'"{aggregate}"',
        "aggregate_id": f'"{aggregate_id}"',
        "data": data,
    }
    fields.update(overrides)
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


def poison(prefix: str, project: str, run_id: str, other_run_id: str) -> list[tuple[str, bytes]]:
    """Poison for ``run_id`` of ``project`` (``other_run_id``: a run whose subject is borrowed)."""
    run = f"{prefix}.{project}.run.{run_id}"
    proj = f"{prefix}.{project}.project.{project}"
    queued = '{"deployment_id":"dep_x","input":{}'
    items: list[tuple[str, bytes]] = [
        (f"{run}.run.queued", b"\x00garbage\xff"),
        (f"{run}.run.queued", b""),
        (
            f"{run}.run.queued",
            _envelope("run.queued", "run", run_id, queued + ',"timeout_s":1' + "0" * 400 + "}"),
        ),
        (f"{run}.run.queued", _envelope("run.queued", "run", run_id, queued + ',"timeout_s":1e400}')),
        (
            f"{run}.run.queued",
            _envelope("run.queued", "run", run_id, '{"deployment_id":"dep_x","input":1' + "0" * 5000 + "}"),
        ),
        (f"{run}.run.exploded", _envelope("run.exploded", "run", run_id, "{}")),
        (f"{run}.run.completed", _envelope("run.completed", "run", run_id, '{"output":1}', version="99")),
        (
            f"{run}.run.completed",
            _envelope("run.completed", "run", run_id, '{"output":' + "[" * 3000 + "]" * 3000 + "}"),
        ),
        (f"{run}.log", _envelope("log", "run", run_id, '{"message":' + "[" * 100 + "]" * 100 + "}")),
        (f"{run}.run.cancel_requested", b"{not json"),
        (f"{run}.run.completed", _envelope("run.completed", "run", run_id, "{}", project=f'"{project}\\n"')),
        # A valid event about another run, published on this run's subject.
        (f"{run}.run.completed", _envelope("run.completed", "run", other_run_id, "{}")),
        (
            f"{proj}.project.limits_set",
            _envelope("project.limits_set", "project", project, '{"max_concurrent_runs":1' + "0" * 40 + "}"),
        ),
        # A deployment whose config no builder or runner could read (for the builder's queue).
        (
            f"{prefix}.{project}.deployment.dep_poison.deployment.created",
            _envelope(
                "deployment.created",
                "deployment",
                "dep_poison",
                '{"source_digest":"sha256-' + "0" * 64 + '","source_size":1,"config":{"entrypoint":5}}',
            ),
        ),
        (f"{prefix}.garbage", b"garbage"),
        (f"{prefix}.{project}.run", b"{}"),
    ]
    return [(subject, data.replace(b"{project}", project.encode())) for subject, data in items]
