"""The CLI's side of the HTTP API: one httpx client, and every failure turned into one red line.

Anything a user can cause or meet — an API error body, a server that is not running, a dropped
connection, a malformed URL — becomes a :class:`CliError`, which click prints as
``error: <message>`` with exit code 1. No httpx exception ever reaches the user as a traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import click
import httpx

DEFAULT_API = "http://127.0.0.1:8080"
#: Failures after which repeating an idempotent request is safe and may well succeed.
RETRYABLE = (
    httpx.ConnectError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.TimeoutException,
)
RETRYABLE_STATUS = frozenset({502, 503, 504})
#: How a kept-alive connection that the server has meanwhile closed fails; a fresh one will not.
STALE = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class CliError(click.ClickException):
    """A failure to show as one red ``error:`` line (exit code 1)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status

    def show(self, file: Any = None) -> None:
        # click.echo strips the colour when stderr is not a terminal, so pipes and logs stay clean.
        click.echo(click.style(f"error: {self.format_message()}", fg="red"), err=True, file=file)


def seg(value: str) -> str:
    """``value`` as one URL path segment: a project or key can never reach another route."""
    return quote(value, safe="")


def api_error(response: httpx.Response) -> CliError:
    """The API's ``{"error": {"code", "message"}}`` body as a CliError (readable even without one)."""
    code = message = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        message = body["error"].get("message")
    if not message:
        text = response.text.strip()
        detail = text.splitlines()[0][:200] if text else response.reason_phrase
        request = response.request
        message = f"HTTP {response.status_code} from {request.method} {request.url.path}: {detail}"
    return CliError(str(message).strip(), code=code, status=response.status_code)


class ApiClient:
    """A synchronous client for ``/v1`` (auth from ``CREWYARD_API_KEY`` when set)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        try:
            url = httpx.URL(self.base_url)
        except httpx.InvalidURL as exc:
            raise CliError(f"invalid API URL {base_url!r}: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise CliError(f"invalid API URL {base_url!r}: expected something like {DEFAULT_API}")
        headers = {"User-Agent": "crewyard-cli", "Accept": "application/json"}
        if key := os.environ.get("CREWYARD_API_KEY"):
            headers["Authorization"] = f"Bearer {key}"
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0)
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def transport_error(self, exc: Exception) -> CliError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return CliError(f"cannot reach the crewyard API at {self.base_url} — is `crewyard up` running?")
        if isinstance(exc, httpx.TimeoutException):
            return CliError(f"the crewyard API at {self.base_url} did not answer in time")
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return CliError(f"invalid API URL {self.base_url!r}: {exc}")
        detail = str(exc) or type(exc).__name__
        return CliError(f"lost the connection to the crewyard API at {self.base_url} ({detail})")

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send a request; an answer of 400 or more raises the API's error as a CliError.

        An idempotent request is sent a second time when a kept-alive connection turns out to have
        been closed by the server meanwhile (a race every HTTP client meets sooner or later).
        """
        params = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                request = self.http.build_request(
                    method, path, json=json, content=content, params=params, headers=headers, **extra
                )
                response = self.http.send(request, stream=stream)
                if response.status_code >= 400:
                    response.read()
                    response.close()
                    raise api_error(response)
                return response
            except STALE as exc:
                if attempt + 1 == attempts:
                    raise self.transport_error(exc) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.transport_error(exc) from None
        raise AssertionError("unreachable")  # the loop always returns or raises

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.send(method, path, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A request whose answer is a JSON object (an empty 204 reads as ``{}``)."""
        return self.decode(self.request(method, path, **kwargs))

    def decode(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise CliError(
                f"the API answered {response.request.method} {response.request.url.path} with no JSON object"
            )
        return body

    def post_idempotent(self, path: str, body: Any, *, key: str, attempts: int = 3) -> dict[str, Any]:
        """POST that is retried on connection failures with the same ``Idempotency-Key``.

        The server may have accepted a request whose answer was lost; the key makes it return the
        same resource instead of creating a second one, so a retry is safe.
        """
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self.http.post(path, json=body, headers={"Idempotency-Key": key})
            except RETRYABLE as exc:
                if last:
                    raise self.transport_error(exc) from None
                time.sleep(0.25 * 2**attempt)
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.transport_error(exc) from None
            if response.status_code in RETRYABLE_STATUS and not last:
                time.sleep(0.25 * 2**attempt)
                continue
            if response.status_code >= 400:
                raise api_error(response)
            return self.decode(response)
        raise AssertionError("unreachable")  # the loop always returns or raises

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed request (see :meth:`send`); errors while reading come out as CliError too."""
        response = self.send(method, path, stream=True, **kwargs)
        try:
            yield response
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self.transport_error(exc) from None
        finally:
            response.close()
