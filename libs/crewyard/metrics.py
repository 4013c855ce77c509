"""Prometheus metrics of a crewyard process (``prometheus_client``'s default registry).

Services count what they do as it happens (runs finished, builds, SSE clients). What lives
elsewhere — a durable consumer's lag, the stream's head, the read model's position and its runs
by status — is asked for when ``/metrics`` is scraped: each service registers an async
*refresher* (:func:`refresh_with`) that :func:`render` awaits, with a time limit, before it
writes the text. HTTP request metrics come from Litestar's Prometheus middleware in the gateway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from crewyard.eventstore import set_aside_counts

__all__ = [
    "BUILDS",
    "BUILD_DURATION",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "CONTENT_TYPE",
    "PROJECTOR_LAG",
    "PROJECTOR_POSITION",
    "RUNS",
    "RUNS_ACTIVE",
    "RUNS_FINISHED",
    "RUNS_HANDED_BACK",
    "RUN_DURATION",
    "RUN_START_LATENCY",
    "SSE_CLIENTS",
    "SSE_DELIVERIES",
    "STREAM_LAST_SEQ",
    "refresh_with",
    "render",
]

log = logging.getLogger("crewyard.metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Runs take seconds to hours.
_RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, float("inf"))
_START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))

RUNS_FINISHED = Counter(
    "crewyard_runs_finished_total", "Runs this runner ended, by outcome and backend", ["status", "backend"]
)
RUN_DURATION = Histogram(
    "crewyard_run_duration_seconds",
    "From start to end of a run's attempt",
    ["status", "backend"],
    buckets=_RUN_BUCKETS,
)
RUN_START_LATENCY = Histogram(
    "crewyard_run_start_latency_seconds",
    "From run.queued to run.started",
    ["backend"],
    buckets=_START_BUCKETS,
)
RUNS_ACTIVE = Gauge("crewyard_runner_active_runs", "Runs this runner executes now")
RUNS_HANDED_BACK = Counter(
    "crewyard_runs_handed_back_total", "Runs a stopping runner handed to another runner (drain)"
)
WARM_SANDBOXES = Gauge(
    "crewyard_warm_sandboxes",
    "Warm sandboxes on this runner per deployment version: idle (ready) or warming up",
    ["deployment", "state"],
)
WARM_MEMORY = Gauge(
    "crewyard_warm_memory_bytes", "Memory the idle warm sandboxes and fork servers of this runner hold"
)
WARM_STARTS = Counter(
    "crewyard_run_starts_total",
    "Runs this runner started: on a warm sandbox, forked from a fork server, or cold",
    ["kind", "backend"],
)
BUILDS = Counter("crewyard_builds_total", "Builds this builder ended", ["status", "backend", "cached"])
BUILD_DURATION = Histogram(
    "crewyard_build_duration_seconds", "How long builds took", ["status", "backend"], buckets=_RUN_BUCKETS
)
SSE_CLIENTS = Gauge("crewyard_sse_clients", "Clients following an SSE stream now", ["stream"])
SSE_DELIVERIES = Counter(
    "crewyard_sse_deliveries_total",
    "Run events written to SSE clients: by the run's feed as they arrive (pushed), by the"
    " client's own response (sent: catching up, resuming, a reader too slow to be pushed to),"
    " or read from the stream for a client that needs what its feed no longer keeps (history)",
    ["path"],
)
CONSUMER_PENDING = Gauge(
    "crewyard_consumer_pending_messages",
    "Messages of a durable consumer's subjects not yet delivered (its lag)",
    ["consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "crewyard_consumer_ack_pending_messages", "Messages delivered and not yet acknowledged", ["consumer"]
)
STREAM_LAST_SEQ = Gauge("crewyard_stream_last_sequence", "The event stream's last sequence (its head)")
PROJECTOR_POSITION = Gauge("crewyard_projector_position", "The last sequence the read model has applied")
PROJECTOR_LAG = Gauge("crewyard_projector_lag_events", "Events stored but not yet in the read model")
RUNS = Gauge(
    "crewyard_runs",
    "Runs in the read model by status and backend (pending: the queue)",
    ["status", "backend"],
)

Refresher = Callable[[], Awaitable[None]]
_refreshers: dict[str, Refresher] = {}
REFRESH_TIMEOUT_S = 3.0


def refresh_with(name: str, refresher: Refresher) -> None:
    """Run ``refresher`` before each scrape (one per ``name``: a later one replaces it)."""
    _refreshers[name] = refresher


def forget(name: str) -> None:
    _refreshers.pop(name, None)


def consumer_backlog(name: str, backlog: Callable[[], Awaitable[tuple[int, int]]]) -> Refresher:
    """A refresher that sets a durable consumer's pending and ack-pending gauges."""

    async def refresh() -> None:
        pending, ack_pending = await backlog()
        CONSUMER_PENDING.labels(name).set(pending)
        CONSUMER_ACK_PENDING.labels(name).set(ack_pending)

    return refresh


async def _refresh(name: str, refresher: Refresher) -> None:
    try:
        await asyncio.wait_for(refresher(), REFRESH_TIMEOUT_S)
    except Exception as exc:  # a scrape must answer even while NATS or SQLite cannot
        log.debug("metrics refresher %s failed: %s", name, exc)


async def render() -> bytes:
    """The process's metrics in Prometheus' text format, refreshed first."""
    await asyncio.gather(*(_refresh(n, r) for n, r in list(_refreshers.items())))
    return generate_latest(REGISTRY)


class _SetAside(Collector):
    """Events each reader set aside (undecodable, out of bounds …), from the event store's counter."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "crewyard_events_set_aside", "Stored events a reader could not use and skipped", labels=["reader"]
        )
        for reader, count in sorted(set_aside_counts().items()):
            family.add_metric([reader], count)
        yield family


REGISTRY.register(_SetAside())
