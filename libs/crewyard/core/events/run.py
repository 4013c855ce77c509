"""Run lifecycle events: queued → started → completed | failed | canceled."""

from __future__ import annotations

from typing import Any

from ..bounds import Attempt, Count, Delay, EnvironmentName, Timeout
from ._base import Payload


class RunQueued(Payload, frozen=True, kw_only=True):
    """``deployment_id`` is the version that runs (``version_number`` its number, for readers of
    the stream); ``environment`` the one it was chosen for (its scoped environment variables
    apply). Version 1 had neither: production, and the number is the version's place."""

    TYPE = "run.queued"
    AGGREGATE = "run"
    VERSION = 2
    deployment_id: str
    input: dict[str, Any]
    timeout_s: Timeout | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    environment: EnvironmentName = "production"
    version_number: Count | None = None
    #: A thread's run: the thread it belongs to (busy with it), and what resumes an interrupted
    #: graph (``{"resume": …}``, LangGraph's ``Command``).
    thread_id: str | None = None
    command: dict[str, Any] | None = None


class RunStarted(Payload, frozen=True, kw_only=True):
    """``warm``: the run took a sandbox its runner had started before it, with the crew already
    imported (a fresh one all the same: every sandbox serves one run)."""

    TYPE = "run.started"
    AGGREGATE = "run"
    runner_id: str
    backend: str
    isolated: bool
    attempt: Attempt = 1
    entrypoint: str = ""
    warm: bool = False


class RunCompleted(Payload, frozen=True, kw_only=True):
    TYPE = "run.completed"
    AGGREGATE = "run"
    status: str = "succeeded"
    output: Any = None
    duration_ms: Count = 0


class RunFailed(Payload, frozen=True, kw_only=True):
    TYPE = "run.failed"
    AGGREGATE = "run"
    error_message: str
    #: crew_error | timeout | out_of_memory | runner_lost | runner_stopped | infrastructure | limit
    reason: str = "crew_error"
    error_type: str | None = None
    stack_trace: str | None = None
    duration_ms: Count = 0


class RunRetrying(Payload, frozen=True, kw_only=True):
    """An attempt ended by an infrastructure failure (not the crew's fault): the run is pending
    again and will start once more after ``delay_s``."""

    TYPE = "run.retrying"
    AGGREGATE = "run"
    attempt: Attempt
    reason: str
    error_message: str
    delay_s: Delay = 0.0


class RunCancelRequested(Payload, frozen=True, kw_only=True):
    TYPE = "run.cancel_requested"
    AGGREGATE = "run"
    reason: str = "requested"


class RunCanceled(Payload, frozen=True, kw_only=True):
    TYPE = "run.canceled"
    AGGREGATE = "run"
    reason: str = "requested"
    duration_ms: Count = 0


RUN_EVENTS: tuple[type[Payload], ...] = (
    RunQueued,
    RunStarted,
    RunCompleted,
    RunFailed,
    RunRetrying,
    RunCancelRequested,
    RunCanceled,
)
TERMINAL_TYPES = frozenset({RunCompleted.TYPE, RunFailed.TYPE, RunCanceled.TYPE})
