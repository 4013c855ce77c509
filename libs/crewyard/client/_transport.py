"""HTTP under the typed clients: one httpx client each (sync or async), error translation, and
the retries that are safe.

An idempotent request is sent a second time when a kept-alive connection turns out to have been
closed by the server meanwhile (a race every HTTP client meets sooner or later). A POST is
retried only with an ``Idempotency-Key``, which makes the server answer a repeat with the
resource it already made.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from crewyard import __version__

from ._errors import ClientError, TransportError, api_error, not_utf8

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


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context clients share (httpx's default: its CA bundle, and
    ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set). Building one loads the whole bundle, ~50 ms;
    a client per command, or per request in a script, would pay that every time."""
    return httpx.create_ssl_context()


def check_base_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    try:
        base.encode("utf-8")
    except UnicodeEncodeError:
        raise TransportError(f"invalid API URL {base_url!r}: it is not UTF-8 text") from None
    try:
        url = httpx.URL(base)
    except httpx.InvalidURL as exc:
        raise TransportError(f"invalid API URL {base_url!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise TransportError(f"invalid API URL {base_url!r}: expected something like {DEFAULT_API}")
    if url.port is not None and not 0 < url.port < 65536:
        raise TransportError(f"invalid API URL {base_url!r}: a port is a number from 1 to 65535")
    try:
        url.host.encode("idna")  # what connecting does with it: a name part over 63 characters fails
    except UnicodeError:
        raise TransportError(
            f"invalid API URL {base_url!r}: not a host name (each dot-separated part has 1 to 63 characters)"
        ) from None
    return base


def default_headers(api_key: str | None, user_agent: str) -> dict[str, str]:
    headers = {"User-Agent": f"{user_agent}/{__version__}", "Accept": "application/json"}
    key = api_key if api_key is not None else os.environ.get("CREWYARD_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error wraps httpcore's, which wraps the ssl module's
        if seen is None or isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def transport_error(base_url: str, exc: Exception) -> TransportError:
    tls = _tls_failure(exc) if isinstance(exc, httpx.ConnectError) else None
    if isinstance(tls, ssl.SSLCertVerificationError):
        return TransportError(
            f"the crewyard API at {base_url} has a certificate this machine does not trust "
            f"({tls.verify_message or tls.reason}); if its CA is your own, set SSL_CERT_FILE to it"
        )
    if tls is not None:  # e.g. https:// to a server that speaks plain HTTP: not a server that is down
        return TransportError(
            f"no TLS connection to the crewyard API at {base_url} ({tls.reason or tls}): "
            "does it serve https? (use http:// for a plain one)"
        )
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return TransportError(f"cannot reach the crewyard API at {base_url} — is `crewyard up` running?")
    if isinstance(exc, httpx.TimeoutException):
        return TransportError(f"the crewyard API at {base_url} did not answer in time")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return TransportError(f"invalid API URL {base_url!r}: {exc}")
    detail = str(exc) or type(exc).__name__
    return TransportError(f"lost the connection to the crewyard API at {base_url} ({detail})")


def _body_for(method: str, json: Any, content: Any) -> Any:
    """The API refuses a POST with neither a body nor an Authorization header (a web page could
    send one cross-site): without a key, a body-less POST goes as ``{}`` in JSON, which no page
    can send cross-site either."""
    if method == "POST" and json is None and content is None:
        return {}
    return json


def _params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


class Transport:
    """Synchronous: :class:`crewyard.client.Client` and the CLI."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        user_agent: str = "crewyard-client",
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.http = http or httpx.Client(
            base_url=self.base_url,
            headers=default_headers(api_key, user_agent),
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=tls_context(),
        )

    def close(self) -> None:
        self.http.close()

    def error(self, exc: Exception) -> TransportError:
        return transport_error(self.base_url, exc)

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
        """Send a request; an answer of 400 or more raises the API's error."""
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        json = _body_for(method, json, content)
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                request = self.http.build_request(
                    method, path, json=json, content=content, params=_params(params), headers=headers, **extra
                )
                response = self.http.send(request, stream=stream)
                if response.status_code >= 400:
                    response.read()
                    response.close()
                    raise api_error(response)
                return response
            except UnicodeEncodeError:
                raise not_utf8() from None
            except STALE as exc:
                if attempt + 1 == attempts:
                    raise self.error(exc) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.error(exc) from None
        raise AssertionError("unreachable")  # the loop always returns or raises

    def post_idempotent(self, path: str, body: Any, *, key: str, attempts: int = 3) -> httpx.Response:
        """A POST retried on connection failures and 502/503/504 with the same ``Idempotency-Key``."""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self.http.post(path, json=body, headers={"Idempotency-Key": key})
            except UnicodeEncodeError:
                raise not_utf8() from None
            except RETRYABLE as exc:
                if last:
                    raise self.error(exc) from None
                time.sleep(0.25 * 2**attempt)
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.error(exc) from None
            if response.status_code in RETRYABLE_STATUS and not last:
                time.sleep(0.25 * 2**attempt)
                continue
            if response.status_code >= 400:
                raise api_error(response)
            return response
        raise AssertionError("unreachable")  # the loop always returns or raises

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed request; errors while reading come out as :class:`TransportError` too."""
        response = self.send(method, path, stream=True, **kwargs)
        try:
            yield response
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self.error(exc) from None
        finally:
            response.close()


class AsyncTransport:
    """Asynchronous twin of :class:`Transport`: :class:`crewyard.client.AsyncClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        user_agent: str = "crewyard-client",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.http = http or httpx.AsyncClient(
            base_url=self.base_url,
            headers=default_headers(api_key, user_agent),
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=tls_context(),
        )

    async def close(self) -> None:
        await self.http.aclose()

    def error(self, exc: Exception) -> TransportError:
        return transport_error(self.base_url, exc)

    async def send(
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
        extra: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        json = _body_for(method, json, content)
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                request = self.http.build_request(
                    method, path, json=json, content=content, params=_params(params), headers=headers, **extra
                )
                response = await self.http.send(request, stream=stream)
                if response.status_code >= 400:
                    await response.aread()
                    await response.aclose()
                    raise api_error(response)
                return response
            except UnicodeEncodeError:
                raise not_utf8() from None
            except STALE as exc:
                if attempt + 1 == attempts:
                    raise self.error(exc) from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.error(exc) from None
        raise AssertionError("unreachable")

    async def post_idempotent(self, path: str, body: Any, *, key: str, attempts: int = 3) -> httpx.Response:
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self.http.post(path, json=body, headers={"Idempotency-Key": key})
            except UnicodeEncodeError:
                raise not_utf8() from None
            except RETRYABLE as exc:
                if last:
                    raise self.error(exc) from None
                await asyncio.sleep(0.25 * 2**attempt)
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise self.error(exc) from None
            if response.status_code in RETRYABLE_STATUS and not last:
                await asyncio.sleep(0.25 * 2**attempt)
                continue
            if response.status_code >= 400:
                raise api_error(response)
            return response
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        response = await self.send(method, path, stream=True, **kwargs)
        try:
            yield response
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self.error(exc) from None
        finally:
            await response.aclose()


__all__ = ["DEFAULT_API", "AsyncTransport", "ClientError", "Transport"]
