"""Thread events: a conversation whose state outlives its runs, one run at a time.

A thread belongs to a deployment name (its runs run the version their environment runs). Its
lifecycle: ``thread.created`` → (``thread.run_accepted`` → ``thread.checkpointed``? →
``thread.run_ended``)* → ``thread.deleted``. Starting a run is ``thread.run_accepted`` appended
with the thread's expected sequence — the one-run-at-a-time rule — followed by the run's
``run.queued``. A checkpoint is written once per run, when it succeeds; it carries the state as
JSON (``values``) and, for LangGraph, the framework's own full checkpoint (``checkpoint``,
serialized by LangGraph's serializer, with its pending writes: what an ``interrupt()`` resumes
from). Checkpoints over a size limit are kept in the object store instead (``ref``), and with
them interrupts too large for an event (``interrupt_count`` says there are some).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..bounds import Count, DeploymentName, Sha256
from ._base import Payload

ThreadStatus = Literal["idle", "busy", "error", "interrupted"]


class CheckpointRef(msgspec.Struct, frozen=True, kw_only=True):
    """A checkpoint kept in the object store (``checkpoints/<sha256>``: JSON ``{"values",
    "checkpoint", "interrupts"}``)."""

    sha256: Sha256
    size: Count


class ThreadCreated(Payload, frozen=True, kw_only=True):
    """``values``: the initial state. A copy (``copied_from``) starts at its source's latest
    checkpoint (``checkpoint_id`` … ``ref``, as in ``thread.checkpointed``)."""

    TYPE = "thread.created"
    AGGREGATE = "thread"
    name: DeploymentName = "default"
    deployment_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    values: dict[str, Any] | None = None
    copied_from: str | None = None
    checkpoint_id: str | None = None
    checkpoint: Any = None
    interrupts: list[Any] = msgspec.field(default_factory=list)
    ref: CheckpointRef | None = None
    #: As in ``thread.checkpointed``.
    interrupt_count: Count = 0

    @property
    def interrupted(self) -> bool:
        return bool(self.interrupts) or self.interrupt_count > 0


class ThreadRunAccepted(Payload, frozen=True, kw_only=True):
    """The thread is busy with ``run_id`` (whose ``run.queued`` follows)."""

    TYPE = "thread.run_accepted"
    AGGREGATE = "thread"
    run_id: str
    previous_status: ThreadStatus = "idle"


class ThreadCheckpointed(Payload, frozen=True, kw_only=True):
    TYPE = "thread.checkpointed"
    AGGREGATE = "thread"
    checkpoint_id: str
    run_id: str | None = None
    values: dict[str, Any] | None = None
    #: The framework's own checkpoint (LangGraph: ``{"serde", "data"}``); None for other crews.
    checkpoint: Any = None
    #: What the graph waits for (LangGraph ``interrupt()`` values): the thread is interrupted.
    interrupts: list[Any] = msgspec.field(default_factory=list)
    ref: CheckpointRef | None = None
    parent_checkpoint_id: str | None = None
    framework: str | None = None
    #: With ``ref``, interrupts too large to travel in the event stay in the stored checkpoint
    #: only: ``interrupts`` is then empty and this says how many there are (0: ``interrupts`` is
    #: the whole list). Events are read by every follower of the thread; they stay small.
    interrupt_count: Count = 0

    @property
    def interrupted(self) -> bool:
        """The checkpoint waits for input (its interrupts inline, or counted and stored)."""
        return bool(self.interrupts) or self.interrupt_count > 0


class ThreadRunEnded(Payload, frozen=True, kw_only=True):
    """The thread's run ended: ``status`` is what the thread is now."""

    TYPE = "thread.run_ended"
    AGGREGATE = "thread"
    run_id: str
    status: ThreadStatus
    reason: str = ""


class ThreadDeleted(Payload, frozen=True, kw_only=True):
    TYPE = "thread.deleted"
    AGGREGATE = "thread"


THREAD_EVENTS: tuple[type[Payload], ...] = (
    ThreadCreated,
    ThreadRunAccepted,
    ThreadCheckpointed,
    ThreadRunEnded,
    ThreadDeleted,
)
