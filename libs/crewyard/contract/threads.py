"""Threads: conversations whose state outlives their runs (one run at a time, a checkpoint per run)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

ThreadStatus = Literal["idle", "busy", "error", "interrupted"]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/threads``: a thread of ``deployment_id``'s deployment name, or of ``project``'s
    (``name``, else its default one). ``values`` is the initial state."""

    deployment_id: Ref | None = None
    project: Ref | None = None
    name: Ref | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    values: dict[str, Any] | None = None


class Thread(msgspec.Struct, kw_only=True):
    thread_id: str
    #: The same as ``thread_id``.
    id: str = ""
    project: str = ""
    #: The deployment name whose versions its runs run.
    name: str = "default"
    #: The version it was created with (when it was created with one).
    deployment_id: str | None = None
    status: ThreadStatus = "idle"
    #: The run it is busy with.
    active_run_id: str | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The current state (the latest checkpoint's values, or the initial ones). A listing shows
    #: states of up to 256 KiB; a larger one (kept in the object store) is null there: read the
    #: thread itself for it.
    values: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    copied_from: str | None = None
    created_at: str = ""
    updated_at: str = ""


class ThreadList(msgspec.Struct, kw_only=True):
    """``GET /v1/threads``: a page, newest first. A page ends early once 16 MiB of its threads'
    metadata and states are in it (at least one thread)."""

    threads: list[Thread]
    #: The ``offset`` of the next page; null after the last.
    next_offset: int | None = None


class ThreadRunCreate(msgspec.Struct, kw_only=True):
    """``POST /v1/threads/{id}/runs``: ``input`` for the crew; ``command`` resumes an interrupted
    LangGraph graph (``{"resume": …}``; plain ``input`` on an interrupted thread resumes it too);
    ``environment``: ``production`` (default) or ``staging``. Unknown fields are ignored."""

    input: dict[str, Any] = msgspec.field(default_factory=dict)
    command: dict[str, Any] | None = None
    environment: str | None = None


class ThreadRunStarted(msgspec.Struct, kw_only=True):
    run_id: str
    thread_id: str
    version_id: str
    version_number: int
    environment: str
    status: str = "pending"
    events_url: str = ""


class Checkpoint(msgspec.Struct, kw_only=True):
    checkpoint_id: str
    #: The run that wrote it (None for the first checkpoint of a copy).
    run_id: str | None
    values: dict[str, Any] | None
    #: What the graph waits for (LangGraph ``interrupt()`` values).
    interrupts: list[Any]
    parent_checkpoint_id: str | None
    framework: str | None
    created_at: str
    #: The framework's own checkpoint (``?full=true`` only).
    checkpoint: Any = None


class ThreadHistory(msgspec.Struct, kw_only=True):
    """``GET /v1/threads/{id}/history``: checkpoints, newest first."""

    history: list[Checkpoint]
    total: int
    limit: int
    offset: int


class ThreadCopy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/threads/{id}/copy``: a new thread starting at this one's latest checkpoint
    (with these metadata; default: the source's)."""

    metadata: dict[str, Any] | None = None


class ThreadDeleted(msgspec.Struct, kw_only=True):
    thread_id: str
    deleted: bool = True
