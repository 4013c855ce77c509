"""The synchronous client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import IO, Any

import httpx

from crewyard.contract.deployments import Deployment
from crewyard.contract.projects import EnvChanged, EnvVar, LimitsSet, Project
from crewyard.contract.runs import Artifact, CancelResult, Run, RunCreate, RunPage, RunStatus
from crewyard.contract.threads import (
    Thread,
    ThreadCreate,
    ThreadDeleted,
    ThreadHistory,
    ThreadList,
    ThreadRunCreate,
    ThreadRunStarted,
)
from crewyard.contract.versions import DeploymentOverview, EnvironmentRollback, PointerMoved, Promote

from . import _ops as ops
from ._sse import EventStream
from ._transport import DEFAULT_API, Transport

_UPLOAD_TIMEOUT = httpx.Timeout(60.0, connect=5.0, write=300.0)
_DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=300.0)


class Client:
    """A typed client for the crewyard HTTP API.

    >>> with Client("http://127.0.0.1:8080") as api:
    ...     run = api.create_run(project="research", input={"topic": "AI"})
    ...     for message in api.run_events(run.id):
    ...         print(message.decode().type)

    ``api_key`` defaults to ``CREWYARD_API_KEY``. Every failure is a
    :class:`crewyard.client.ClientError` (``NotFound``, ``Conflict``, ``TransportError`` …).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_API,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        user_agent: str = "crewyard-client",
    ) -> None:
        self.transport = Transport(base_url, api_key=api_key, timeout=timeout, user_agent=user_agent)
        self.base_url = self.transport.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    def _do(self, op: ops.Op) -> Any:
        response = self.transport.send(op.method, op.path, params=op.params, json=op.body)
        return ops.decode(op, response.content)

    def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any route, answered with a JSON object (decode it with ``msgspec.convert`` into a
        :mod:`crewyard.contract` type); for routes this client has no method for yet."""
        response = self.transport.send(method, path, json=json, params=params)
        return ops.json_object(method, path, response.content)

    # Runs

    def create_run(
        self,
        *,
        deployment_id: str | None = None,
        project: str | None = None,
        input: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        name: str | None = None,
        environment: str | None = None,
    ) -> Run:
        """Start a run of ``deployment_id``, or of ``project``'s current deployment.

        Sent with an ``Idempotency-Key`` (a fresh one unless given), so a request whose answer
        was lost is sent again safely: the server answers with the run it already made.
        """
        op = ops.create_run(
            RunCreate(
                deployment_id=deployment_id,
                project=project,
                name=name,
                environment=environment,
                input=input or {},
                timeout_s=timeout_s,
            )
        )
        response = self.transport.post_idempotent(op.path, op.body, key=idempotency_key or str(uuid.uuid4()))
        run: Run = ops.decode(op, response.content)
        return run

    def get_run(self, run_id: str) -> Run:
        run: Run = self._do(ops.get_run(run_id))
        return run

    def list_runs(
        self,
        *,
        project: str | None = None,
        status: RunStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
        full: bool = False,
        deployment_id: str | None = None,
    ) -> RunPage:
        """One page of runs, newest first; pass ``page.next_cursor`` as ``cursor`` for the next.
        ``deployment_id``: only the runs of that version. Its runs carry their ``input`` and
        ``output`` only with ``full``."""
        page: RunPage = self._do(ops.list_runs(project, status, limit, cursor, full, deployment_id))
        return page

    def iter_runs(
        self, *, project: str | None = None, status: RunStatus | None = None, page_size: int = 100
    ) -> Iterator[Run]:
        """Every matching run, newest first, fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_runs(project=project, status=status, limit=page_size, cursor=cursor)
            yield from page.runs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def cancel_run(self, run_id: str) -> CancelResult:
        result: CancelResult = self._do(ops.cancel_run(run_id))
        return result

    def run_events(
        self, run_id: str, *, after: int | None = None, cancel_on_disconnect: bool = False
    ) -> EventStream:
        """The run's events (history, then live) until its terminal event; a dropped connection is
        resumed with ``Last-Event-ID``. ``after`` starts after that stream sequence."""

        def run_is_over() -> bool:
            return self.get_run(run_id).status in ops.FINAL_RUN_STATUSES

        params = {"cancel_on_disconnect": "true"} if cancel_on_disconnect else None
        return EventStream(
            self.transport,
            f"/v1/runs/{ops.seg(run_id)}/events",
            last_event_id=None if after is None else str(after),
            params=params,
            on_eof=run_is_over,
        )

    def list_artifacts(self, run_id: str) -> list[Artifact]:
        artifacts: list[Artifact] = self._do(ops.list_artifacts(run_id)).artifacts
        return artifacts

    def iter_artifact(self, run_id: str, name: str, *, offset: int = 0) -> Iterator[bytes]:
        """An artifact's bytes, streamed (from ``offset`` on, with a ``Range`` request)."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        with self.transport.stream(
            "GET", ops.artifact_path(run_id, name), headers=headers, timeout=_DOWNLOAD_TIMEOUT
        ) as response:
            yield from response.iter_bytes()

    def download_artifact(self, run_id: str, name: str, into: IO[bytes]) -> int:
        """Write an artifact into a binary file object; the number of bytes written."""
        size = 0
        for chunk in self.iter_artifact(run_id, name):
            into.write(chunk)
            size += len(chunk)
        return size

    # Deployments

    def deploy(
        self,
        project: str,
        archive: bytes | Iterable[bytes],
        *,
        size: int | None = None,
        name: str | None = None,
        environment: str | None = None,
    ) -> Deployment:
        """Upload a crew archive (``crewyard.packaging.pack``) as a new deployment of ``project``.

        ``archive`` may be an iterable of chunks (for progress reporting); give its ``size`` then.
        """
        length = len(archive) if isinstance(archive, bytes) else size
        # An explicit Content-Length keeps httpx from chunking the body, so the gateway can refuse
        # an oversized upload before reading it.
        headers = {"Content-Type": "application/gzip"}
        if length is not None:
            headers["Content-Length"] = str(length)
        op = ops.Op("POST", ops.upload_path(project), Deployment, {"name": name, "environment": environment})
        with self.transport.stream(
            "POST", op.path, content=archive, params=op.params, headers=headers, timeout=_UPLOAD_TIMEOUT
        ) as response:
            response.read()
        deployment: Deployment = ops.decode(op, response.content)
        return deployment

    def get_deployment(self, deployment_id: str) -> Deployment:
        deployment: Deployment = self._do(ops.get_deployment(deployment_id))
        return deployment

    def list_deployments(self, project: str, name: str | None = None) -> list[Deployment]:
        """A project's versions, newest first (of one deployment ``name``)."""
        deployments: list[Deployment] = (self._do(ops.list_deployments(project, name))).deployments
        return deployments

    def get_deployment_name(self, project: str, name: str) -> DeploymentOverview:
        """A deployment name: which version each environment runs."""
        overview: DeploymentOverview = self._do(ops.get_deployment_name(project, name))
        return overview

    def promote(
        self,
        project: str,
        name: str,
        *,
        to: str = "production",
        from_environment: str | None = "staging",
        version_id: str | None = None,
    ) -> PointerMoved:
        """Point ``to`` at ``from_environment``'s version (or at ``version_id``) at once."""
        body = Promote(to=to, from_=None if version_id else from_environment, version_id=version_id)  # type: ignore[arg-type]
        moved: PointerMoved = self._do(ops.promote(project, name, body))
        return moved

    def rollback_environment(
        self, project: str, name: str, *, environment: str = "production", version_id: str | None = None
    ) -> PointerMoved:
        """Move ``environment`` back to the version it ran before (or to ``version_id``) at once."""
        body = EnvironmentRollback(environment=environment, version_id=version_id)  # type: ignore[arg-type]
        moved: PointerMoved = self._do(ops.rollback_environment(project, name, body))
        return moved

    def rollback(self, project: str, deployment_id: str, environment: str | None = None) -> Deployment:
        """Make an earlier, ready deployment the project's current one again (no rebuild)."""
        deployment: Deployment = self._do(ops.rollback(project, deployment_id, environment))
        return deployment

    def build_log(self, deployment_id: str, *, after: int | None = None) -> EventStream:
        """A deployment's build events until it is ready or failed."""

        def build_is_over() -> bool:
            return self.get_deployment(deployment_id).status in ops.FINAL_BUILD_STATUSES

        return EventStream(
            self.transport,
            f"/v1/deployments/{ops.seg(deployment_id)}/build-log",
            last_event_id=None if after is None else str(after),
            on_eof=build_is_over,
        )

    # Threads

    def create_thread(
        self,
        *,
        project: str | None = None,
        deployment_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
    ) -> Thread:
        """A thread of a deployment name (``deployment_id``'s, or ``project``'s ``name``/default)."""
        body = ThreadCreate(
            project=project, deployment_id=deployment_id, name=name, metadata=metadata or {}, values=values
        )
        thread: Thread = self._do(ops.create_thread(body))
        return thread

    def list_threads(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[Thread]:
        """A page of threads, newest first (:meth:`thread_page` also says where the next starts:
        a page ends early once 16 MiB of metadata and states are in it)."""
        page = self.thread_page(project=project, name=name, status=status, limit=limit, offset=offset)
        return page.threads

    def thread_page(
        self,
        *,
        project: str | None = None,
        name: str | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> ThreadList:
        """A page of threads and ``next_offset``, the next page's ``offset`` (None after the last)."""
        page: ThreadList = self._do(ops.list_threads(project, name, status, limit, offset))
        return page

    def get_thread(self, thread_id: str) -> Thread:
        thread: Thread = self._do(ops.get_thread(thread_id))
        return thread

    def run_thread(
        self,
        thread_id: str,
        *,
        input: dict[str, Any] | None = None,
        command: dict[str, Any] | None = None,
        environment: str | None = None,
    ) -> ThreadRunStarted:
        """Start a run in the thread (:class:`Conflict` while it runs another)."""
        body = ThreadRunCreate(input=input or {}, command=command, environment=environment)
        started: ThreadRunStarted = self._do(ops.run_thread(thread_id, body))
        return started

    def thread_history(self, thread_id: str, *, limit: int = 20, offset: int = 0) -> ThreadHistory:
        """Checkpoints, newest first."""
        history: ThreadHistory = self._do(ops.thread_history(thread_id, limit, offset))
        return history

    def copy_thread(self, thread_id: str) -> Thread:
        thread: Thread = self._do(ops.copy_thread(thread_id))
        return thread

    def delete_thread(self, thread_id: str) -> ThreadDeleted:
        deleted: ThreadDeleted = self._do(ops.delete_thread(thread_id))
        return deleted

    def thread_events(self, thread_id: str, *, after: int | None = None) -> EventStream:
        """The thread's events and its runs', across runs, until closed."""
        return EventStream(
            self.transport,
            f"/v1/threads/{ops.seg(thread_id)}/events",
            last_event_id=None if after is None else str(after),
        )

    # Projects, environment, limits

    def list_projects(self) -> list[Project]:
        projects: list[Project] = self._do(ops.list_projects()).projects
        return projects

    def get_project(self, name: str) -> Project:
        project: Project = self._do(ops.get_project(name))
        return project

    def set_env(self, project: str, key: str, value: str, environment: str | None = None) -> EnvChanged:
        """Set a variable (encrypted at rest, never shown again)."""
        changed: EnvChanged = self._do(ops.set_env(project, key, value, environment))
        return changed

    def list_env(self, project: str) -> list[EnvVar]:
        env: list[EnvVar] = self._do(ops.list_env(project)).env
        return env

    def unset_env(self, project: str, key: str, environment: str | None = None) -> EnvChanged:
        changed: EnvChanged = self._do(ops.unset_env(project, key, environment))
        return changed

    def set_limits(self, project: str, max_concurrent_runs: int | None) -> LimitsSet:
        """At most ``max_concurrent_runs`` runs of the project at once (None: no limit)."""
        limits: LimitsSet = self._do(ops.set_limits(project, max_concurrent_runs))
        return limits

    def project_events(self, project: str, *, after: int | None = None) -> EventStream:
        """Every event of a project, live (with ``after``: from there on), until closed."""
        return EventStream(
            self.transport,
            f"/v1/projects/{ops.seg(project)}/events",
            last_event_id=None if after is None else str(after),
        )
