"""The gateway's Litestar application: REST + SSE + OpenAPI over the event store and read model."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, Router, get
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig
from litestar.routes import HTTPRoute

from crewyard import __version__, metrics
from crewyard.auth import Names, load_issuer
from crewyard.auth.consumers import Consumers
from crewyard.contract.health import Alive, Ready
from crewyard.core import asyncapi
from crewyard.eventstore import EventStore, close, connect, ensure_platform_stream, ensure_stream
from crewyard.health import Readiness
from crewyard.objects import open_store
from crewyard.readmodel import ReadModel
from crewyard.secrets import SecretBox, load_key
from crewyard.settings import Settings

from . import (
    deployments,
    events,
    keys,
    projects,
    runs,
    schedules,
    tables,
    threads,
    triggers,
    versions,
    webhooks,
)
from .access import authorize
from .console import CONSOLE
from .context import ApiRequest, Gateway, gw
from .errors import HANDLERS, error_body
from .frontdoor import AccessMiddleware
from .openapi import document_errors
from .sessions import open_ended_sessions

log = logging.getLogger("crewyard.gateway")
OPEN = {"open": True}


@get("/healthz", opt=OPEN)
async def healthz() -> Alive:
    """Alive: the process answers. Says nothing about NATS or the read model (see /readyz)."""
    return Alive(service="gateway", version=__version__)


@get("/readyz", opt=OPEN, responses={503: ResponseSpec(Ready, description="Not ready: the reasons")})
async def readyz(request: Request[Any, Any, Any]) -> Response[Ready]:
    """Ready: JetStream reachable and writable, the stream's leader answers, the read model close
    to the stream's head. 503 with the reasons otherwise."""
    report = await gw(request).readiness.check()
    return Response(msgspec.convert(report.body(), Ready), status_code=200 if report.ready else 503)


#: Counts of every project: a platform-wide key's (see ``access``).
PLATFORM_READ = {"role": "read", "platform": True}


@get("/metrics", opt=PLATFORM_READ, media_type=metrics.CONTENT_TYPE, include_in_schema=False)
async def metrics_text(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus metrics of this process: HTTP, runs, builds, consumer lag, read model lag, SSE.
    Counts of every project: a platform-wide key with the read role (a scraper's bearer token)."""
    return Response(await metrics.render(), media_type=metrics.CONTENT_TYPE)


#: HTTP rate, latency and status per route template. SSE streams are left out of the latency
#: histogram (they last as long as a run); ``crewyard_sse_clients`` counts them instead.
_HTTP_METRICS = PrometheusConfig(
    app_name="crewyard",
    prefix="crewyard",
    group_path=True,
    exclude=[r"/events$", r"/build-log$", r"^/metrics$", r"^/live/"],
)


@get("/v1/asyncapi.json", opt=OPEN)
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
        wait = settings.store_timeout_s
        store = EventStore(nc, settings.stream, read_timeout=wait, request_timeout=wait)
        await ensure_stream(store.js, settings.stream)
        await ensure_platform_stream(store.js, settings.stream)
        rm = await ReadModel.open(settings.db_path)
        readiness = Readiness(
            "gateway", instance=f"{socket.gethostname()}-{os.getpid()}", max_lag=settings.ready_max_lag
        )
        readiness.attach(store)
        readiness.position = rm.position
        registry, first = await keys.open_keys(settings, store)
        ended_sessions = await open_ended_sessions(settings, store)
        if first:
            log.warning(
                "the first admin key is %s (shown once; also in %s)", first, keys.admin_key_path(settings)
            )
        app.state.gateway = Gateway(
            settings=settings,
            store=store,
            objects=open_store(settings, nc),
            rm=rm,
            secrets=SecretBox(load_key(settings.data_dir, settings.secret_key_b64)),
            readiness=readiness,
            keys=registry,
            ended_sessions=ended_sessions,
            consumers=consumers_for(settings, store),
        )
        metrics.refresh_with("gateway", app.state.gateway.refresh_metrics)
        try:
            yield
        finally:
            app.state.gateway.closing.set()
            if registry is not None:
                await registry.stop()
            if ended_sessions is not None:
                await ended_sessions.stop()
            await rm.close()
            await close(nc)

    app = Litestar(
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
            *keys.ROUTES,
            CONSOLE,
        ],
        lifespan=[lifespan],
        before_request=authorize,
        middleware=[AccessMiddleware, _HTTP_METRICS.middleware],
        exception_handlers=HANDLERS,
        request_class=ApiRequest,
        openapi_config=_openapi(),
        cors_config=_cors(settings),
        request_max_body_size=2 * 1024 * 1024,
        debug=False,
    )
    check_access_rules(app)
    document_errors(app.openapi_schema)
    return app


async def _no_page(response: Response[Any]) -> Response[Any]:
    """Litestar answers a path under ``/schema`` it has no document for with an HTML page."""
    if response.status_code == 404:
        return error_body(404, "not_found", "the API document is /schema/openapi.json (or .yaml)")
    return response


def _openapi() -> OpenAPIConfig:
    """The document is open (``/schema…``); it says every other route takes a bearer key.

    Only the document, as JSON (also at ``/schema``) and YAML: the browsable pages Litestar
    serves by default load scripts from public CDNs ("latest" versions, no integrity check) on
    the console's own origin — a script that could sign requests with an admin's session."""
    return OpenAPIConfig(
        title="crewyard",
        version=__version__,
        openapi_router=Router(path="/schema", route_handlers=[], opt=OPEN, after_request=_no_page),
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="cyk_…")}
        ),
        security=[{"apiKey": []}],
    )


def _cors(settings: Settings) -> CORSConfig | None:
    """Off unless origins are configured: no browser page elsewhere may call the API."""
    origins = list(settings.cors_origin_list)
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        allow_credentials=False,
        max_age=600,
    )


def check_access_rules(app: Litestar) -> None:
    """Refuse to start with a route the access check would not cover (fail closed): one that
    declares neither a role nor ``open``; one that is not an HTTP route (Litestar runs
    ``before_request`` for HTTP routes only: a websocket or mounted ASGI app would be open); one
    whose own ``before_request`` would replace the check; one whose answers are cached (Litestar
    answers from its cache before the hook runs); one with guards of its own that is not open
    (a route's guards run before the hook: they would act for a caller not yet authenticated)."""
    not_http = sorted(route.path for route in app.routes if not isinstance(route, HTTPRoute))
    if not_http:
        raise RuntimeError(
            "routes that are not HTTP routes (the access check runs for those only): " + ", ".join(not_http)
        )
    handlers = [
        (f"{method} {route.path}", handler)
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for method in handler.http_methods
    ]
    missing = [
        name
        for name, handler in handlers
        if not name.startswith("OPTIONS ") and not (handler.opt.get("open") is True or "role" in handler.opt)
    ]
    if missing:
        raise RuntimeError(
            "routes without an access rule (opt={'role': …} or {'open': True}): " + ", ".join(sorted(missing))
        )
    unguarded = [
        name
        for name, handler in handlers
        if handler.resolve_before_request() is not authorize
        or handler.cache
        or (handler.resolve_guards() and handler.opt.get("open") is not True)
    ]
    if unguarded:
        raise RuntimeError(
            "routes the access check would not run for, or not first (another before_request, cached"
            " answers, or guards of their own on a route that is not open): " + ", ".join(sorted(unguarded))
        )


def consumers_for(settings: Settings, store: EventStore) -> Consumers | None:
    """Issues outside consumers' NATS credentials, where this gateway holds the issuer keys."""
    if settings.issuer_file is None:
        return None

    return Consumers(store, load_issuer(settings.issuer_file), Names.of(settings.stream), settings.nats_url)
