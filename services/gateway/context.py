"""What the gateway's handlers share: the event store, object store, read model and secrets,
plus the two moves every command makes: append an event, then wait until the read model has it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.params import Parameter
from litestar.types import Empty

from crewyard import metrics
from crewyard.auth.apikeys import KeyRegistry
from crewyard.auth.consumers import Consumers
from crewyard.auth.sessions import EndedSessions
from crewyard.backoff import Backoff
from crewyard.core import subjects
from crewyard.core.bounds import MAX_JSON_DEPTH, OutOfBounds, check_json
from crewyard.core.deployment_state import fold_project
from crewyard.core.events import Event, Payload, ProjectCreated, make_event
from crewyard.core.ids import deployment_id as stored_id
from crewyard.core.ids import is_id, new_id
from crewyard.core.platform_state import ConsumerState
from crewyard.core.subjects import InvalidName, check_project_name
from crewyard.core.versions import Resolved, VersionError
from crewyard.eventstore import ConcurrencyConflict, EventStore, StoreUnavailable
from crewyard.health import Readiness
from crewyard.keyedlock import KeyedLock
from crewyard.objects import ObjectStore
from crewyard.readmodel import ReadModel
from crewyard.secrets import SecretBox
from crewyard.settings import Settings

from .errors import ApiError, bad_request, not_found
from .hub import Hub, Memory
from .sse import Closing

#: How long a lookup waits for the read model: to refresh a row it has (then answers with what
#: it has), and to catch up with something the stream has and it does not (then a 503).
FRESH_S = 2.0
CATCH_UP_S = 10.0


@dataclass
class Gateway:
    settings: Settings
    store: EventStore
    objects: ObjectStore
    rm: ReadModel
    secrets: SecretBox
    readiness: Readiness
    #: API keys as this gateway follows them (None only with ``--no-auth``).
    keys: KeyRegistry | None = None
    #: Console sessions signed out before their expiry, on any gateway (None with ``--no-auth``).
    ended_sessions: EndedSessions | None = None
    #: Issues outside consumers' NATS credentials (None where the issuer keys are not given).
    consumers: Consumers | None = None
    _hub: Hub | None = None
    #: Set when the gateway shuts down: SSE streams end with a retry hint (``sse.RETRY_HINT``).
    closing: Closing = dataclasses.field(default_factory=Closing)
    #: Event streams open on this gateway, per API key id (``access.take_stream_place``).
    streams: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Creations of a kind in a project, one at a time on this gateway (``create_counted``).
    creating: KeyedLock = dataclasses.field(default_factory=KeyedLock)

    @functools.cached_property
    def allowed_hosts(self) -> tuple[str, ...]:
        """``settings.allowed_host_list``, worked out once: every request is checked against it."""
        return self.settings.allowed_host_list

    @property
    def hub(self) -> Hub:
        """Shared run feeds (made on first use, inside the running event loop)."""
        if self._hub is None:
            self._hub = Hub(
                self.store,
                self.settings.sse_ping_s,
                Memory(self.settings.sse_window_bytes, self.settings.sse_memory_bytes),
            )
        return self._hub

    async def refresh_metrics(self) -> None:
        """Scrape-time gauges: runs by status and backend, read model position vs stream head."""
        counts = await self.rm.run_counts()
        metrics.RUNS.clear()
        for (status, backend), n in counts.items():
            metrics.RUNS.labels(status, backend).set(n)
        position, head = await self.rm.position(), await self.store.last_seq()
        metrics.PROJECTOR_POSITION.set(position)
        metrics.STREAM_LAST_SEQ.set(head)
        metrics.PROJECTOR_LAG.set(max(head - position, 0))

    async def consumer_states(self) -> dict[str, ConsumerState]:
        """Every outside consumer credential ever issued (read from the platform stream)."""
        if self.consumers is None:
            return {}
        return await self.consumers.all()

    async def commit(self, event: Event, expected_seq: int | None, expected_over: str | None = None) -> int:
        seq = await self.store.append(event, expected_seq=expected_seq, expected_over=expected_over)
        await self.rm.wait_for(seq)
        return seq

    async def commit_payload(
        self,
        payload: Payload,
        project: str,
        aggregate_id: str,
        expected_seq: int | None,
        expected_over: str | None = None,
    ) -> int:
        """Append ``payload`` to its aggregate if nothing was appended since ``expected_seq`` (to
        the aggregate, or to the subjects ``expected_over`` matches); then wait for the read model."""
        event = make_event(payload, project=project, aggregate_id=aggregate_id, event_id=new_id("evt"))
        return await self.commit(event, expected_seq, expected_over)

    async def create_counted(self, payload: Payload, project: str, aggregate_id: str, limit: int) -> int:
        """Append the creation ``payload`` of one more of ``project``'s webhooks, triggers,
        schedules or tables (its aggregate says which), unless the project has ``limit`` of
        them (0: no limit): a 409 ``limit_reached`` then. Creations of a kind in a project wait
        for each other on this gateway, and the stream serializes them across gateways (each
        append expects the kind's last creation the count had seen; one that lost is counted
        again), so racing requests cannot pass the limit together. A deletion the read model
        does not hold yet only makes the count high for a moment."""
        kind = payload.AGGREGATE
        if limit <= 0:
            return await self.commit_payload(payload, project, aggregate_id, 0)
        over = subjects.aggregate_filter(project, kind, "*", self.store.prefix, types=payload.TYPE)
        behind = ApiError(503, "unavailable", "the read model is behind the event stream; try again")
        # A read model more than 5 s behind (a projector recovering) fails the creation before it
        # waits for its turn, as creations failed before there was a count: requests queued for
        # one project's kind are not each kept waiting for it in turn.
        if not await self.rm.wait_for(await self.store.last_seq_of(over) or 0, 5.0):
            raise behind
        turns = Backoff(30, first=0.02, most=1.0, jitter=True)  # the wait for its turn counts too
        async with self.creating.hold(f"{project}/{kind}"):
            while not turns.expired:
                seq = await self.store.last_seq_of(over) or 0
                if not await self.rm.wait_for(seq, 5.0):
                    raise behind
                if await self.rm.live_count(kind, project) >= limit:
                    raise ApiError(
                        409,
                        "limit_reached",
                        f"project {project} has as many {kind}s as a project may have ({limit});"
                        " delete one first (the platform's operator sets the limit)",
                    )
                try:
                    return await self.commit_payload(payload, project, aggregate_id, seq, expected_over=over)
                except ConcurrencyConflict:  # another gateway created one meanwhile
                    # ... unless it came after ours, which did land (an append that timed out and
                    # was sent again cannot tell): then it is done.
                    mine = await self.store.last_seq_of(
                        self.store.aggregate_filter(project, kind, aggregate_id)
                    )
                    if mine is not None:
                        await self.rm.wait_for(mine)
                        return mine
                    await turns.pause()
        raise ApiError(
            503, "unavailable", f"{kind}s are being created in project {project} too fast; try again"
        )

    async def fresh(self) -> None:
        """Wait until the read model holds everything stored so far (after a miss or a stale view)."""
        await self.rm.catch_up(await self.store.last_seq())

    async def settle(self, what: str, filter_subject: str, *, known: bool) -> None:
        """Give the read model time to hold what the stream has of one aggregate.

        The stream's leader says whether the aggregate exists and where its last event is. With
        ``known`` the read model has a row and only its freshness is in question: a stream that
        cannot be read or a read model that stays behind leave the row as the answer. Without it,
        "not found" comes only from the stream's leader; a stream that cannot be read or a read
        model that does not catch up in time is a 503 — never a 404 for something that exists
        (a gateway whose projector is recovering from a failover)."""
        try:
            last = await self.store.last_seq_of(filter_subject)
        except StoreUnavailable:
            if known:
                return
            raise
        if last is None:
            if known:
                return
            raise not_found(what)
        if not await self.rm.wait_for(last, timeout=FRESH_S if known else CATCH_UP_S) and not known:
            raise behind(what)

    async def run(self, run_id: str) -> dict[str, Any]:
        """A run's view (``run_view``)."""
        return await self._settled_run(run_id, self.rm.run)

    async def run_json(self, run_id: str) -> str:
        """A run's view as JSON text, written by SQLite: what ``GET /v1/runs/{id}`` sends."""
        return str((await self._settled_run(run_id, self.rm.run_json))["j"])

    async def _settled_run(
        self, run_id: str, read: Callable[[str], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any]:
        if not is_id(run_id, "run"):
            raise not_found(f"run {run_id[:100]}")
        run = await read(run_id)
        if run is None or run["status"] in ("pending", "running"):
            # A client that just saw the run's events (maybe through another gateway) may ask at
            # once: answer with what is stored.
            filt = subjects.any_project_aggregate_filter("run", run_id, self.store.prefix)
            await self.settle(f"run {run_id}", filt, known=run is not None)
            run = await read(run_id) or run
        if run is None:
            raise not_found(f"run {run_id}")
        return run

    async def deployment(self, dep_id: str) -> dict[str, Any]:
        """A version by either spelling of its id (``dep_…`` or ``ver_…``)."""
        dep_id = stored_id(dep_id)
        if not is_id(dep_id, "dep"):
            raise not_found(f"deployment {dep_id[:100]}")
        dep = await self.rm.deployment(dep_id)
        if dep is None or dep["status"] == "building":  # a client may have seen it end elsewhere
            filt = subjects.any_project_aggregate_filter("deployment", dep_id, self.store.prefix)
            await self.settle(f"deployment {dep_id}", filt, known=dep is not None)
            dep = await self.rm.deployment(dep_id) or dep
        if dep is None:
            raise not_found(f"deployment {dep_id}")
        return dep

    async def table(self, table_id: str) -> dict[str, Any]:
        """A live table's view (``table_view``), looked up like a run: no 404 for one that exists."""
        return await self._settled("table", "tbl", table_id, self.rm.table)

    async def thread(self, thread_id: str) -> dict[str, Any]:
        """A thread's row (``thread_view``), looked up like a run: no 404 for one that exists."""
        return await self._settled("thread", "thr", thread_id, self.rm.thread)

    async def thread_owner(self, thread_id: str) -> dict[str, Any]:
        """A thread's id and project, looked up as :meth:`thread` without reading its state."""
        return await self._settled("thread", "thr", thread_id, self.rm.thread_owner)

    async def _settled(
        self, aggregate: str, prefix: str, an_id: str, read: Callable[[str], Awaitable[dict[str, Any] | None]]
    ) -> dict[str, Any]:
        if not is_id(an_id, prefix):  # nothing that is not an id reaches a subject
            raise not_found(f"{aggregate} {an_id[:100]}")
        found = await read(an_id)
        if found is None:  # maybe made through another gateway a moment ago: the leader knows
            filt = subjects.any_project_aggregate_filter(aggregate, an_id, self.store.prefix)
            await self.settle(f"{aggregate} {an_id}", filt, known=False)
            found = await read(an_id)
        if found is None:  # deleted (the read model holds its last event)
            raise not_found(f"{aggregate} {an_id}")
        return found

    async def project(self, name: str) -> dict[str, Any]:
        proj = await self.rm.project(name)
        if proj is None:
            filt = subjects.aggregate_filter(name, "project", name, self.store.prefix)
            await self.settle(f"project {name}", filt, known=False)
            proj = await self.rm.project(name)
        if proj is None:
            raise not_found(f"project {name}")
        return proj

    async def resolve_version(
        self,
        *,
        project: str | None,
        deployment_id: str | None = None,
        name: str | None = None,
        environment: str | None = None,
    ) -> Resolved:
        """What a run runs (see :func:`crewyard.core.versions.resolve`); on a miss the read model
        catches up first (a client may have seen the build end elsewhere)."""
        dep_id = stored_id(deployment_id) if deployment_id else None
        args: dict[str, Any] = {
            "project": project,
            "deployment_id": dep_id,
            "name": name,
            "environment": environment,
        }
        try:
            return await self.rm.resolve_version(**args)
        except VersionError as exc:
            if exc.kind == "bad_request":
                raise
        caught_up = await self.rm.catch_up(await self.store.last_seq(), timeout=CATCH_UP_S)
        try:
            return await self.rm.resolve_version(**args)
        except VersionError as exc:
            if exc.kind == "not_found" and not caught_up:  # it may exist: this gateway is behind
                raise behind("the deployment to run") from None
            raise

    async def ensure_project(self, project: str) -> None:
        """Create the project on first use (deploy or env set); a racing creator is fine."""
        for _ in range(3):
            state = fold_project(project, await self.store.load(project, "project", project))
            if state.exists:
                return
            try:
                await self.commit_payload(ProjectCreated(name=project), project, project, state.version)
                return
            except ConcurrencyConflict:
                continue


def behind(what: str) -> ApiError:
    """503: the stream may have it, this gateway's read model does not yet (it is catching up)."""
    return ApiError(503, "unavailable", f"{what}: this gateway's read model is catching up; retry")


def gw(request: Request[Any, Any, Any]) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def project_name(name: str) -> str:
    try:
        return check_project_name(name)
    except InvalidName as exc:
        raise bad_request(str(exc), "invalid_project") from None


class ApiRequest(Request[Any, Any, Any]):
    """The gateway's request: a JSON body is decoded once, for whatever reads it (Litestar's
    typed ``data`` included), within the platform's bounds on JSON (depth, integer size), and a
    body that is not JSON is a 400 naming the problem. An empty body reads as no body (None)."""

    async def json(self) -> Any:
        # Litestar caches the decoded body on the request and the connection state (both read
        # below the same way its own ``json`` does): decoded once, whoever asks first.
        if self._json is not Empty or self._connection_state.json is not Empty:
            return await super().json()
        raw = await self.body()
        if not raw.strip():
            value = None
        else:
            try:
                value = _any.decode(raw)
            except msgspec.DecodeError as exc:
                raise bad_request(f"request body is not valid JSON: {exc}") from None
            except RecursionError:  # the decoder's own guard, far beyond our depth limit
                raise bad_request(f"request body is nested deeper than {MAX_JSON_DEPTH} levels") from None
            try:
                check_json(value, "request body")
            except OutOfBounds as exc:
                raise bad_request(str(exc)) from None
        self._json = self._connection_state.json = value
        return value


_any = msgspec.json.Decoder()

#: ``Idempotency-Key``: printable ASCII (UUIDs, hashes, request names), matched as a whole. A
#: repeat of a request with the same key (and body) answers with what the first one made.
IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        pattern=r"^[\x20-\x7e]{1,255}$",
        description="Repeat the request safely: the same key and body answer with what the first made.",
    ),
]
