"""The gateway's Litestar application: REST + SSE + OpenAPI over the event store and read model."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig

from crewyard import __version__, metrics
from crewyard.core import asyncapi
from crewyard.eventstore import EventStore, connect, ensure_stream
from crewyard.health import Readiness
from crewyard.objects import open_store
from crewyard.readmodel import ReadModel
from crewyard.secrets import SecretBox, load_key
from crewyard.settings import Settings

from . import deployments, events, projects, runs, schedules, tables, threads, triggers, versions, webhooks
from .console import CONSOLE
from .context import Gateway, gw
from .errors import HANDLERS


@get("/healthz", opt={"open": True})
async def healthz() -> dict[str, Any]:
    """Alive: the process answers. Says nothing about NATS or the read model (see /readyz)."""
    return {"status": "ok", "service": "gateway", "version": __version__}


@get("/readyz", opt={"open": True})
async def readyz(request: Request[Any, Any, Any]) -> Response[Any]:
    """Ready: JetStream reachable and writable, the stream's leader answers, the read model close
    to the stream's head. 503 with the reasons otherwise."""
    report = await gw(request).readiness.check()
    return Response(report.body(), status_code=200 if report.ready else 503)


@get("/metrics", opt={"open": True}, media_type=metrics.CONTENT_TYPE, include_in_schema=False)
async def metrics_text(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus metrics of this process: HTTP, runs, builds, consumer lag, read model lag, SSE."""
    return Response(await metrics.render(), media_type=metrics.CONTENT_TYPE)


#: HTTP rate, latency and status per route template. SSE streams are left out of the latency
#: histogram (they last as long as a run); ``crewyard_sse_clients`` counts them instead.
_HTTP_METRICS = PrometheusConfig(
    app_name="crewyard",
    prefix="crewyard",
    group_path=True,
    exclude=[r"/events$", r"/build-log$", r"^/metrics$", r"^/live/"],
)


@get("/v1/asyncapi.json")
async def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI document of the event stream (subjects and payloads)."""
    return _ASYNCAPI


_ASYNCAPI = asyncapi.document()


def create_app(settings: Settings, *, gateway: Gateway | None = None) -> Litestar:
    """The app; it owns its connections unless a ready ``gateway`` is given (``crewyard up``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if gateway is not None:
            app.state.gateway = gateway
            metrics.refresh_with("gateway", gateway.refresh_metrics)
            yield
            return
        nc = await connect(settings.nats_url, name="crewyard-gateway", creds=settings.creds_for("gateway"))
        store = EventStore(nc, settings.stream)
        await ensure_stream(store.js, settings.stream)
        rm = await ReadModel.open(settings.db_path)
        readiness = Readiness(
            "gateway", instance=f"{socket.gethostname()}-{os.getpid()}", max_lag=settings.ready_max_lag
        )
        readiness.attach(store)
        readiness.position = rm.position
        app.state.gateway = Gateway(
            settings=settings,
            store=store,
            objects=open_store(settings, nc),
            rm=rm,
            secrets=SecretBox(load_key(settings.data_dir, settings.secret_key_b64)),
            readiness=readiness,
        )
        metrics.refresh_with("gateway", app.state.gateway.refresh_metrics)
        try:
            yield
        finally:
            app.state.gateway.closing.set()
            await rm.close()
            await nc.drain()

    return Litestar(
        route_handlers=[
            healthz,
            metrics_text,
            readyz,
            asyncapi_document,
            *runs.ROUTES,
            *deployments.ROUTES,
            *versions.ROUTES,
            *tables.ROUTES,
            *threads.ROUTES,
            *projects.ROUTES,
            *webhooks.ROUTES,
            *triggers.ROUTES,
            *schedules.ROUTES,
            *events.ROUTES,
            CONSOLE,
        ],
        lifespan=[lifespan],
        middleware=[_HTTP_METRICS.middleware],
        exception_handlers=HANDLERS,
        openapi_config=OpenAPIConfig(title="crewyard", version=__version__, path="/schema"),
        request_max_body_size=2 * 1024 * 1024,
        debug=False,
    )
