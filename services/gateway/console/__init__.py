"""The web console: server-rendered pages over the gateway's own read model and stream.

See ``README.md`` beside this file for how it is built and why.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, Router, get
from litestar.exceptions import HTTPException

from crewyard.core.versions import VersionError
from crewyard.eventstore import StoreUnavailable

from ..errors import CODES, ApiError, error_body
from . import automation, automation_forms, consumers, data, keys, live, pages, projects, signin, threads
from .render import STATIC, page

log = logging.getLogger("crewyard.gateway")
_CACHE_FOREVER = "public, max-age=31536000, immutable"


@get("/static/{name:str}", opt={"open": True}, include_in_schema=False)
async def static_file(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """The console's own CSS and script (their URLs carry their hash: cached as immutable)."""
    item = STATIC.get(name)
    if item is None:
        return error_body(404, "not_found", "no such file of the console")
    headers = {
        "ETag": f'"{item.digest}"',
        "Cache-Control": _CACHE_FOREVER if request.query_params.get("v") == item.digest else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(b"", status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


def _error_page(request: Request[Any, Any, Any], status: int, message: str, code: str = "") -> Response[Any]:
    """The error page; for the console's live fragments (read by its script), the API's error
    body, whose code tells a sign-out from too many streams."""
    if request.url.path.startswith("/live/"):
        return error_body(status, code or CODES.get(status, "error"), message)
    return page(request, "error.html", status=status, status_code=status, message=message, nav="")


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    if exc.status == 401 and request.method == "GET" and not request.url.path.startswith("/live/"):
        response = signin.sign_in_here(request)  # not signed in (or the session ended)
    else:
        response = _error_page(request, exc.status, exc.message, exc.code)
    for name, value in (getattr(exc, "headers", None) or {}).items():
        response.headers[name] = value
    return response


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return _error_page(request, exc.status_code, str(exc.detail or "error"))


def _version_error(request: Request[Any, Any, Any], exc: VersionError) -> Response[Any]:
    return _error_page(request, {"not_found": 404, "bad_request": 400}.get(exc.kind, 409), str(exc))


def _unavailable(request: Request[Any, Any, Any], exc: StoreUnavailable) -> Response[Any]:
    log.warning("console: %s", exc)
    return _error_page(request, 503, "the event stream cannot be reached right now; try again in a moment")


CONSOLE = Router(
    path="/",
    route_handlers=[
        static_file,
        *pages.ROUTES,
        *projects.ROUTES,
        *automation.ROUTES,
        *automation_forms.ROUTES,
        *live.ROUTES,
        *threads.ROUTES,
        *data.ROUTES,
        *consumers.ROUTES,
        *keys.ROUTES,
        *signin.ROUTES,
    ],
    exception_handlers={
        ApiError: _api_error,
        HTTPException: _http_error,
        VersionError: _version_error,
        StoreUnavailable: _unavailable,
    },
)

__all__ = ["CONSOLE"]
