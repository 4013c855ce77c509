"""The builder service: ``deployment.created`` → a runnable environment → ready or failed.

Builders share one durable consumer, so any number of instances split the work. Build output is
streamed as ``deployment.build.log`` events while it happens. A build that fails because of the
crew (dependencies that do not install) ends the deployment ``failed`` with the installer's
error; an infrastructure problem (object store down, container engine unreachable) leaves the
message to be delivered again (one still there at the queue's last delivery fails the
deployment saying so, rather than leave it ``building`` for good). A source the object store does
not have, or has damaged, fails the deployment at once: every delivery would find the same.
A deployment that becomes ready is its project's current one (``deployment.promoted`` is only
written for rollbacks). Whatever the crew's files hold, a build ends in an event the core takes:
its output and failure message are made valid UTF-8 (a lone surrogate from a file name or a JSON
key becomes ``?``), and a failure that still cannot be stored is recorded in words of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from crewyard import logs, metrics
from crewyard.backoff import Backoff
from crewyard.core import subjects
from crewyard.core.crewfile import CrewConfig
from crewyard.core.deployment_state import BUILDING, fold_deployment
from crewyard.core.events import (
    BuildLog,
    BuildStarted,
    DeploymentFailed,
    DeploymentReady,
    InvalidEvent,
    Payload,
    make_event,
)
from crewyard.core.ids import new_id
from crewyard.environments import BuildBackend, BuildFailed, BuildRequest
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable, WorkItem, WorkQueue
from crewyard.objects import ObjectCorrupt, ObjectNotFound, ObjectStore, ObjectStoreError
from crewyard.servicekit import bind_when_able
from crewyard.settings import Settings
from crewyard.workspace import Workspace

from .backends import BuildBackendUnavailable

log = logging.getLogger("crewyard.builder")
ACK_WAIT = 60.0
#: How often a builder looks for what dead builders left running.
SWEEP_S = 600.0
#: What one build may write to the stream: lines of at most MAX_LINE characters, at most
#: MAX_LINES of them and MAX_LOG_BYTES in all (the rest is counted, not kept), and a failure
#: message of at most MAX_MESSAGE characters (its end: the installer's last words).
MAX_LINE = 16 * 1024
MAX_LINES = 10_000
MAX_LOG_BYTES = 8 * 1024 * 1024
MAX_MESSAGE = 16 * 1024
#: The failure recorded when the crew's own words cannot be stored (see ``Builder._finish``).
UNSTORABLE = "the build failed, and its error message could not be stored (see the build log)"


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8 (what an event can carry): what cannot be encoded becomes ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _cut(text: str, most: int, *, keep_end: bool = False) -> str:
    if len(text) <= most:
        return text
    return "…" + text[-most:] if keep_end else text[:most] + "…"


class _BuildLog:
    """One build's output on its way to the stream, within the bounds above."""

    def __init__(self, emit: Callable[[Payload], Awaitable[None]]) -> None:
        self.emit = emit
        self.lines = self.bytes = self.dropped = 0

    async def line(self, line: str, stream: str) -> None:
        line = safe_text(_cut(line, MAX_LINE))
        self.lines += 1
        self.bytes += len(line.encode())  # what the stream stores: a character may be 4 bytes
        if self.lines > MAX_LINES or self.bytes > MAX_LOG_BYTES:
            self.dropped += 1
            return
        await self.emit(BuildLog(line=line, stream=stream))

    async def close(self) -> None:
        if self.dropped:
            note = (
                f"… {self.dropped} more lines of build output were not kept"
                f" ({MAX_LINES} lines, {MAX_LOG_BYTES >> 20} MiB at most)"
            )
            await self.emit(BuildLog(line=note, stream="builder"))


class Builder:
    #: Seconds before a build the container engine could not take is tried again: an engine
    #: restart takes a while, and the queue delivers a message only a few times.
    engine_retry_delay = 15.0
    #: Seconds the build's end may lose races to other writers of the deployment before the
    #: message is left to be delivered again (well within ACK_WAIT: the heartbeat has stopped).
    finish_patience = 20.0

    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        objects: ObjectStore,
        backend: BuildBackend,
        builder_id: str,
    ) -> None:
        self.store = store
        self.backend = backend
        self.builder_id = builder_id
        self.workspace = Workspace(settings.cache_dir, objects, settings.archive_limits)
        self.queue = WorkQueue(
            store,
            "builder",
            subjects.type_filter("deployment.created", "deployment", store.prefix),
            ack_wait=ACK_WAIT,
        )

    async def run(self, stop: asyncio.Event) -> None:
        sweeper = asyncio.create_task(self._sweep(stop))
        try:
            await self._serve(stop)
        finally:
            sweeper.cancel()

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Every :data:`SWEEP_S`: what dead builders left running (a build container) is removed."""
        while not stop.is_set():
            try:
                if removed := await self.backend.sweep():
                    log.warning("removed %d build container(s) of builders that died", removed)
            except BuildBackendUnavailable as exc:
                log.warning("could not look for dead builders' build containers: %s", exc)
            except Exception:  # never the builder's end: the next round tries again
                log.exception("looking for dead builders' build containers failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_S)

    async def _serve(self, stop: asyncio.Event) -> None:
        if not await bind_when_able(self.queue, stop):
            return
        durable = self.queue.durable
        metrics.refresh_with(f"consumer:{durable}", metrics.consumer_backlog(durable, self.queue.backlog))
        while not stop.is_set():
            try:
                items = await self.queue.fetch(1, timeout=1.0)
            except StoreUnavailable:
                await asyncio.sleep(1.0)
                continue
            for item in items:
                try:
                    await self._handle(item)
                except (StoreUnavailable, ObjectStoreError, ConcurrencyConflict):
                    log.exception("infrastructure error; build will be retried")
                    await item.nak(delay=2.0)
                except BuildBackendUnavailable:
                    log.exception("container engine unavailable; build will be retried")
                    await item.nak(delay=self.engine_retry_delay)
                except Exception:
                    log.exception("builder failed handling %s", item.event.subject)
                    await item.nak(delay=5.0)

    async def _emit(self, project: str, dep_id: str, payload: Payload) -> None:
        await self.store.append_nowait(
            make_event(payload, project=project, aggregate_id=dep_id, event_id=new_id("evt"))
        )

    async def _handle(self, item: WorkItem) -> None:
        created = item.event.decode().event
        with logs.bind(deployment_id=created.aggregate_id, project=created.project):
            await self._build(item, created.aggregate_id, created.project)

    async def _build(self, item: WorkItem, dep_id: str, project: str) -> None:
        state = fold_deployment(dep_id, await self.store.load(project, "deployment", dep_id, current=True))
        if not state.exists:  # the message is the deployment's first event: a stale read
            await item.nak(delay=1.0)
            return
        if state.status != BUILDING:
            await item.ack()
            return
        await self._emit(project, dep_id, BuildStarted(builder_id=self.builder_id, backend=self.backend.name))
        t0 = time.monotonic()

        async def emit(payload: Payload) -> None:
            await self._emit(project, dep_id, payload)

        output = _BuildLog(emit)
        heartbeat = asyncio.create_task(_keep_alive(item))
        try:
            source_dir = await self._source(state.source_digest)
            config = msgspec.convert(state.config, CrewConfig)
            request = BuildRequest(
                deployment_id=dep_id,
                project=project,
                source_dir=source_dir,
                source_digest=state.source_digest,
                config=config,
            )
            result = await self.backend.build(request, output.line)
            outcome: Payload = DeploymentReady(
                env_digest=result.env_digest,
                backend=result.backend,
                cached=result.cached,
                duration_ms=int((time.monotonic() - t0) * 1000),
                image=result.image,
                env_sha256=result.env_sha256,
            )
        except BuildFailed as exc:
            outcome = DeploymentFailed(error_message=safe_text(_cut(str(exc), MAX_MESSAGE, keep_end=True)))
        except (StoreUnavailable, ObjectStoreError, BuildBackendUnavailable) as exc:
            if item.deliveries < self.queue.max_deliver:
                raise  # ours, not the crew's (a store or an engine down or restarting): delivered again
            # The queue's last delivery: a failure that says why beats a deployment "building" for good.
            if isinstance(exc, BuildBackendUnavailable):
                what = "the container engine could not be reached"
            else:
                what = "the platform's event or object store could not be used"
            message = f"{what} ({item.deliveries} tries): {exc}"
            outcome = DeploymentFailed(error_message=safe_text(_cut(message, MAX_MESSAGE, keep_end=True)))
        except Exception as exc:  # what the crew's files made a step fail on (a path too long to
            # unpack, a file nested past a parser's depth…): a failed build, never one retried
            # until the queue gives up on it with the deployment left "building"
            log.warning("build of %s stopped: %r", dep_id, exc)
            outcome = DeploymentFailed(error_message=safe_text(_cut(stopped_message(exc), MAX_MESSAGE)))
        finally:
            heartbeat.cancel()
        await output.close()
        await self.store.flush()
        if await self._finish(project, dep_id, outcome):
            ready = isinstance(outcome, DeploymentReady)
            status, backend = ("ready" if ready else "failed"), self.backend.name
            cached = "true" if isinstance(outcome, DeploymentReady) and outcome.cached else "false"
            metrics.BUILDS.labels(status, backend, cached).inc()
            metrics.BUILD_DURATION.labels(status, backend).observe(time.monotonic() - t0)
        await item.ack()

    async def _source(self, digest: str) -> Path:
        """The deployment's source folder. BuildFailed when the object store has no such source,
        or one whose bytes do not match their digest: every delivery would find the same."""
        try:
            return await self.workspace.source(digest)
        except ObjectNotFound:
            raise BuildFailed(
                f"the deployment's source ({digest}) is not in the object store: deploy the crew again"
            ) from None
        except ObjectCorrupt:
            raise BuildFailed(
                f"the deployment's source ({digest}) is damaged in the object store (its bytes do not"
                " match their digest): deploy the crew again"
            ) from None

    async def _finish(self, project: str, dep_id: str, outcome: Payload) -> bool:
        """Append the build's end; False when the deployment is no longer building. A terminal
        event must always be stored: an event the store refuses is replaced by one in words of our
        own (redelivering the message would fail the same way until the queue gave up, the
        deployment left ``building``). Each try reads what the stream has now (any replica may
        answer a plain read, and one behind would lose every race); one that lost pauses longer
        each time, and past ``finish_patience`` the ConcurrencyConflict is raised: the message is
        delivered again, never acknowledged with the end unwritten."""
        turns = Backoff(self.finish_patience, first=0.05, most=2.0, jitter=True)
        while True:
            history = await self.store.load(project, "deployment", dep_id, current=True)
            state = fold_deployment(dep_id, history)
            if state.status != BUILDING:
                return False
            event = make_event(outcome, project=project, aggregate_id=dep_id, event_id=new_id("evt"))
            try:
                await self.store.append(event, expected_seq=state.version)
                return True
            except ConcurrencyConflict:
                if turns.expired:
                    raise
                await turns.pause()
            except InvalidEvent as exc:
                if isinstance(outcome, DeploymentFailed) and outcome.error_message == UNSTORABLE:
                    raise
                log.warning("the end of build %s cannot be stored (%s): failing it plainly", dep_id, exc)
                outcome = DeploymentFailed(error_message=UNSTORABLE)


def stopped_message(exc: Exception) -> str:
    """What the user reads when a build step raised: an OSError's text names its file, a path on
    this host, so only its reason is said."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"the build stopped: {type(exc).__name__}: {reason}"


async def _keep_alive(item: WorkItem) -> None:
    while True:
        await asyncio.sleep(ACK_WAIT / 3)
        await item.in_progress()
