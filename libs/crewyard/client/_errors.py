"""The client's errors: one root, and one class per kind of failure a caller may handle.

Every failure — an API error body, a server that is not running, a dropped connection, a
malformed URL — is a :class:`ClientError` (a :class:`crewyard.errors.CrewyardError`) whose message
is one readable sentence. No httpx exception reaches the caller.
"""

from __future__ import annotations

from typing import Any

import httpx

from crewyard.errors import CrewyardError

__all__ = [
    "ApiError",
    "BadRequest",
    "ClientError",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "api_error",
    "looks_like_html",
    "not_utf8",
]


class ClientError(CrewyardError):
    """Root of the client's errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransportError(ClientError):
    """The API could not be reached, did not answer in time, or the connection was lost."""


class ApiError(ClientError):
    """The API answered with an error: ``{"error": {"code", "message"}}`` and a 4xx/5xx status."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BadRequest(ApiError):
    """400 or 422: the request is not valid (the message names the field or limit)."""


class Unauthorized(ApiError):
    """401: no API key, or one the platform does not know."""


class Forbidden(ApiError):
    """403: the key's role does not allow this."""


class NotFound(ApiError):
    """404: no such run, deployment, project, artifact … (or another project's)."""


class Conflict(ApiError):
    """409: not possible in the resource's current state (e.g. a deployment still building)."""


class PayloadTooLarge(ApiError):
    """413: the upload or input is over the platform's limit."""


class ServerError(ApiError):
    """5xx: the platform failed; the gateway's log has the details."""


class Unavailable(ServerError):
    """502/503/504: the gateway is there but cannot serve now (retrying later may work)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: BadRequest,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def api_error(response: httpx.Response) -> ApiError:
    """The API's error body as an :class:`ApiError` (readable even without one). The response
    must have been read."""
    code = message = None
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
    if not message:
        text = response.text.strip()
        detail = text.splitlines()[0][:200] if text else response.reason_phrase
        request = response.request
        if looks_like_html(response.content):  # its first line, <!DOCTYPE html>, says nothing
            origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}"
            detail = f"a web page, not an answer of the crewyard API (is {origin} a crewyard API?)"
        message = f"HTTP {response.status_code} from {request.method} {request.url.path}: {detail}"
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return kind(str(message).strip(), status=status, code=code if isinstance(code, str) else None)


def not_utf8() -> ClientError:
    """Text that no request can carry: a lone surrogate, which is how Python holds the bytes of
    an argument or environment variable that are not UTF-8 (``'\\udcff'`` for a byte 0xff). The
    text is not quoted: it may be a secret (an env value in the body being encoded)."""
    return ClientError(
        "cannot send a value that is not UTF-8 text (an argument in another encoding?); nothing was sent"
    )


def looks_like_html(content: bytes) -> bool:
    """A web page, where the API answers JSON: another server is at that address."""
    return content.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html"))
