"""Runs: invoking a deployment, reading runs and pages of runs, canceling, their artifacts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

RunStatus = Literal["pending", "running", "succeeded", "failed", "canceled"]
#: Bounds of the gateway's own checks, declared so the schema says them too.
MAX_TIMEOUT_S = 30 * 24 * 3600.0
TimeoutSeconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RunCreate(msgspec.Struct, kw_only=True):
    """``POST /v1/runs``. Give ``deployment_id`` (``dep_…`` or ``ver_…``: exactly that version;
    with ``environment``, that environment's version of its deployment name) or ``project`` (and
    ``name``: the version ``environment`` runs of that deployment name, the project's default
    one when left out); ``deployment`` is the reference product's older field (an id or a project
    name). Unknown fields are ignored, so the reference product's own bodies are accepted."""

    deployment_id: Name | None = None
    project: Name | None = None
    name: Name | None = None
    deployment: Name | None = None
    #: The crew's input (``kickoff(inputs=…)`` / the graph's state); a JSON object, at most 1 MiB.
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Seconds before the run is failed with ``timeout`` (default: the crew's ``timeout``).
    timeout_s: TimeoutSeconds | None = None
    #: ``production`` (the default) or ``staging``.
    environment: str | None = None
    entrypoint: str | None = None


class Run(msgspec.Struct, kw_only=True):
    """A run as ``GET /v1/runs/{id}`` shows it (field names of the reference product).

    Readers accept answers with only some fields (the reference product's create answer has
    ``run_id`` and ``status``): what is missing takes its default, and ``id`` / ``run_id``
    fill each other."""

    id: str = ""
    #: The same as ``id`` (the reference product's create answer calls it so).
    run_id: str = ""
    project: str = ""
    deployment_id: str = ""
    #: The version that runs (``deployment_id`` spelled ``ver_…``) and its number.
    version_id: str = ""
    version_number: int | None = None
    #: The environment it was chosen for (its scoped environment variables apply).
    environment: str = "production"
    #: The deployment name whose version runs (in the answer of ``POST /v1/runs``).
    name: str | None = None
    #: The thread it ran in (a thread run), else None.
    thread_id: str | None = None
    status: RunStatus = "pending"
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    #: What the crew returned (only when ``succeeded``).
    output: Any = None
    error_message: str | None = None
    #: Why it failed or was canceled: ``crew_error``, ``timeout``, ``limit``, ``runner_lost`` …
    error_reason: str | None = None
    created_at: str = ""
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: int | None = None
    #: Attempts so far (infrastructure failures are retried).
    attempt: int = 0
    #: Where it ran: ``docker``, ``bwrap`` or ``process``, and whether that isolates the crew.
    backend: str | None = None
    isolated: bool | None = None
    cancel_requested: bool = False
    timeout_s: float | None = None
    #: Only in the answers of ``POST /v1/runs``: where to follow the run.
    events_url: str | None = None

    def __post_init__(self) -> None:
        self.id = self.id or self.run_id
        self.run_id = self.run_id or self.id


#: The most runs one page of ``GET /v1/runs`` holds (``limit``).
MAX_RUNS_PAGE = 500


class RunPage(msgspec.Struct, kw_only=True):
    """``GET /v1/runs``: newest first; pass ``next_cursor`` as ``cursor`` for the next page.
    Its runs have no ``input`` and ``output`` (so they decode as ``{}`` and None) unless the
    page was asked for with ``full=true``."""

    runs: list[Run]
    next_cursor: str | None


class CancelResult(msgspec.Struct, kw_only=True):
    """``POST /v1/runs/{id}/cancel``: ``canceled`` (it never started), ``canceling`` (it is being
    stopped), or the status it had already reached."""

    success: bool = True
    status: str


class Artifact(msgspec.Struct, kw_only=True):
    """A file a run wrote; ``GET /v1/runs/{id}/artifacts/{name}`` downloads it (``ETag`` = sha256)."""

    name: str
    size: int = 0
    content_type: str = "application/octet-stream"
    sha256: str = ""
    created_at: str = ""


class ArtifactList(msgspec.Struct, kw_only=True):
    artifacts: list[Artifact]
