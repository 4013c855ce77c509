"""API errors: every failure leaves as ``{"error": {"code", "message"}}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from crewyard.core.bounds import OutOfBounds
from crewyard.core.events import InvalidEvent
from crewyard.core.threads import ThreadBusy, ThreadError
from crewyard.core.versions import VersionError
from crewyard.errors import CrewyardError
from crewyard.eventstore import StoreUnavailable
from crewyard.objects import ObjectStoreError

log = logging.getLogger("crewyard.gateway")


class ApiError(CrewyardError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


def _body(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _body(exc.status, exc.code, exc.message, getattr(exc, "headers", None))


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
}


def http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    message = exc.detail or "error"
    extra = getattr(exc, "extra", None)
    if exc.status_code == 400 and extra:
        message = f"{message}: {extra}"
    return _body(exc.status_code, _CODES.get(exc.status_code, "error"), str(message))


def invalid(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A request whose event the core refuses: handlers check first and name the field, this
    is the backstop that keeps anything unreadable out of the stream."""
    return _body(400, "bad_request", str(exc))


_VERSION_STATUS = {"not_found": 404, "bad_request": 400, "conflict": 409}


def version_error(_: Request[Any, Any, Any], exc: VersionError) -> Response[Any]:
    """No deployment, version or environment to use as asked (the core's ``kind`` says how)."""
    return _body(_VERSION_STATUS.get(exc.kind, 409), exc.code, str(exc))


def thread_error(_: Request[Any, Any, Any], exc: ThreadError) -> Response[Any]:
    """A missing thread (404) or a busy one (409, naming the run it is busy with: ``run_id``)."""
    body: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, ThreadBusy):
        body["run_id"] = exc.run_id
    return Response({"error": body}, status_code=_VERSION_STATUS.get(exc.kind, 409))


def unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _body(503, "unavailable", f"a platform component is unavailable: {exc}")


def internal(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", exc_info=exc)
    return _body(500, "internal", "internal error; the gateway log has the details")


HANDLERS: dict[int | type[Exception], Any] = {
    Exception: internal,
    ApiError: api_error,
    HTTPException: http_error,
    InvalidEvent: invalid,
    OutOfBounds: invalid,
    VersionError: version_error,
    ThreadError: thread_error,
    StoreUnavailable: unavailable,
    ObjectStoreError: unavailable,
}
