"""API errors: every failure leaves as ``{"error": {"code", "message"}}`` with a 4xx/5xx status."""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from crewyard.core.bounds import MAX_CONCURRENCY, MAX_TIMEOUT_S, OutOfBounds
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


#: A run's input as JSON, however it is given (a run, a trigger's template, a schedule's).
MAX_INPUT = 1024 * 1024
_size = msgspec.json.Encoder()


def check_input_size(value: Any) -> None:
    """413 when ``value`` as JSON is larger than a run's input may be. An object is measured a
    field at a time, and refused as soon as its fields so far are too large: one made of many
    copies of a large value (a trigger's template naming the same part of a 2 MB body a hundred
    times) was encoded whole first, 200 MB and seconds of the event loop for one request."""
    if not isinstance(value, dict):
        if len(_size.encode(value)) > MAX_INPUT:
            raise _too_large()
        return
    size = 2  # {}
    for i, (key, field) in enumerate(value.items()):
        size += (1 if i else 0) + len(_size.encode(key)) + 1 + len(_size.encode(field))  # ,"key":…
        if size > MAX_INPUT:
            raise _too_large()


def _too_large() -> ApiError:
    return ApiError(413, "payload_too_large", f"input is larger than {MAX_INPUT} bytes")


def error_body(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=headers,
        media_type="application/json",  # also where the route answers otherwise (``/schema``)
    )


def api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return error_body(exc.status, exc.code, exc.message, getattr(exc, "headers", None))


CODES = {
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
    return error_body(exc.status_code, CODES.get(exc.status_code, "error"), str(message))


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """A body, header or parameter its declared type refuses: 400 with one sentence per problem,
    naming the field (``input must be a JSON object``, ``value is required``)."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    message = "; ".join(dict.fromkeys(friendly(p) for p in problems if isinstance(p, dict)))
    return error_body(400, "bad_request", message or str(exc.detail))


#: Kwarg names whose wire name differs (headers).
_WIRE_NAMES = {"idempotency_key": "Idempotency-Key"}
#: What a value must look like, where a pattern would say it less clearly.
_DESCRIBED = {"idempotency_key": "Idempotency-Key must be 1 to 255 printable ASCII characters"}
#: Ranges said whole (msgspec names only the bound that was crossed).
_RANGES = {
    "timeout_s": f"timeout_s must be positive and at most {MAX_TIMEOUT_S:g} seconds",
    "max_concurrent_runs": (
        f"max_concurrent_runs must be between 1 and {MAX_CONCURRENCY} (or null for no limit)"
    ),
}
_KINDS = {
    "object": "a JSON object",
    "array": "an array",
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
}
_WORDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}
#: The contract's patterns, said in words (a regular expression is not an answer for people).
_NAME = "lower-case letters, digits, '-' or '_', starting with a letter or digit"
_FORMS = {
    r"^(dep|ver)_[0-9a-z]{26}\Z": "a version id (dep_ or ver_ and 26 lower-case letters and digits)",
    r"^dep_[0-9a-z]{26}\Z": "a version id (dep_ and 26 lower-case letters and digits)",
    r"^[a-z0-9][a-z0-9_-]{0,62}\Z": f"1 to 63 {_NAME}",
    r"^[A-Za-z0-9][A-Za-z0-9 ._@-]*\Z": "letters, digits, spaces and . _ @ -, starting with either",
    r"^[A-Za-z0-9-]+\Z": "letters, digits and -",
    r"^[A-Za-z0-9_.-]+\Z": "letters, digits and _ . -",
}


def _kind(types: str) -> str:
    kinds = [t.strip() for t in types.split("|") if t.strip() != "null"]
    return " or ".join(_KINDS.get(k, k) for k in kinds) or "null"


def _number(text: str) -> str:
    try:
        return f"{float(text):g}"
    except ValueError:
        return text


def friendly(problem: dict[str, Any]) -> str:
    """One of Litestar's validation problems (msgspec's message and the field's path) as a
    sentence for people."""
    key = str(problem.get("key") or "")
    message = str(problem.get("message") or "")
    inside = "" if key in ("", "data") else f"{key}."
    if key in _DESCRIBED:
        return _DESCRIBED[key]
    where = _WIRE_NAMES.get(key) or ("request body" if key in ("", "data") else key)
    if m := re.fullmatch(r"Object missing required field `(.+)`", message):
        return f"{inside}{m[1]} is required"
    if m := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        return f"unknown field {inside}{m[1]}"
    if m := re.fullmatch(r"Expected `(.+?)`, got `(.+)`", message):
        return f"{where} must be {_kind(m[1])}"
    if m := re.fullmatch(r"Expected `(.+?)` of length (>=|<=|>|<) (\d+)", message):
        unit = "characters" if m[1].startswith("str") else "items"
        return f"{where} must have {_WORDS[m[2]]} {m[3]} {unit}"
    if m := re.fullmatch(r"Expected `(.+?)` (>=|<=|>|<) (\S+)", message):
        return _RANGES.get(key) or f"{where} must be {_WORDS[m[2]]} {_number(m[3])}"
    if m := re.fullmatch(r"Expected `(.+?)` matching regex '(.+)'", message):
        form = _FORMS.get(m[2].replace("\\\\", "\\"))  # (msgspec's message doubles a backslash)
        return f"{where} must be {form}" if form else f"{where} is not in the expected form ({m[2]})"
    if m := re.fullmatch(r"Invalid enum value (.+)", message):
        return f"{where} may not be {m[1]}"
    if message.startswith("Expected `") or message.startswith("Invalid"):
        return f"{where}: {message}"
    # Anything else is about the body as a whole (e.g. no body where one is required).
    return "request body must be a JSON object" if where == "request body" else f"{where}: {message}"


def invalid(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A request whose event the core refuses: handlers check first and name the field, this
    is the backstop that keeps anything unreadable out of the stream."""
    return error_body(400, "bad_request", str(exc))


_VERSION_STATUS = {"not_found": 404, "bad_request": 400, "conflict": 409}


def version_error(_: Request[Any, Any, Any], exc: VersionError) -> Response[Any]:
    """No deployment, version or environment to use as asked (the core's ``kind`` says how)."""
    return error_body(_VERSION_STATUS.get(exc.kind, 409), exc.code, str(exc))


def thread_error(_: Request[Any, Any, Any], exc: ThreadError) -> Response[Any]:
    """A missing thread (404) or a busy one (409, naming the run it is busy with: ``run_id``)."""
    body: dict[str, Any] = {"code": exc.code, "message": str(exc)}
    if isinstance(exc, ThreadBusy):
        body["run_id"] = exc.run_id
    return Response({"error": body}, status_code=_VERSION_STATUS.get(exc.kind, 409))


def unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The broker or the object store did not answer. What they said (subjects, buckets, server
    addresses) is for the gateway's log, not for whoever asked: a trigger URL answers anyone."""
    route = request.scope.get("path_template") or "?"  # never the path: a trigger's holds its token
    log.warning("%s %s: a platform component is unavailable: %s", request.method, route, exc)
    return error_body(503, "unavailable", "a platform component is unavailable right now; try again shortly")


def internal(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", exc_info=exc)
    return error_body(500, "internal", "internal error; the gateway log has the details")


HANDLERS: dict[int | type[Exception], Any] = {
    Exception: internal,
    ApiError: api_error,
    HTTPException: http_error,
    ValidationException: validation_error,
    InvalidEvent: invalid,
    OutOfBounds: invalid,
    VersionError: version_error,
    ThreadError: thread_error,
    StoreUnavailable: unavailable,
    ObjectStoreError: unavailable,
}
