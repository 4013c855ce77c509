"""One HTTP attempt to a webhook target, made safe.

- The host is resolved for every attempt and each address checked (:func:`crewyard.core.targets.
  refusal`): the request goes to the first allowed address itself (``Host`` and TLS SNI keep the
  name), so a name cannot pass the check with one address and connect to another.
- Connect and read timeouts, and a bound on the whole attempt, name resolution included (on the
  notifier's own threads, one lookup per name at a time: :mod:`.resolver`); the response body is
  read up to :data:`EXCERPT_BYTES` and the connection dropped after that.
- Redirects are never followed (a 3xx is a final answer), no proxy settings are taken from the
  environment, and nothing of the platform's (API key, cookies) is ever sent.
- HTTPS connections are never kept for another request: a pool finds a kept connection by
  address, and a certificate is checked only when a connection is opened — so one opened for
  ``attacker.example`` would carry a delivery meant for ``victim.example`` on the same address (a
  CDN's, a load balancer's that routes by name). Plain HTTP connections are kept (nothing is
  checked per name there; ``Host`` says which).
- No cookie is kept: one a receiver set for the address would go to every other receiver there.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import http.cookiejar
import ipaddress
import socket
import ssl
import time
import urllib.request
from collections.abc import Container
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec

from crewyard.core.targets import IP, Policy, refusal
from crewyard.settings import Settings

from .resolver import Resolver, ResolveTimeout, UnusableName

EXCERPT_BYTES = 1024
USER_AGENT = "crewyard-webhooks/1"


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    status_code: int | None
    error: str | None
    latency_ms: int
    excerpt: str
    retry_after_s: float | None = None
    #: The target may not be used (an address the policy refuses): trying again will not help.
    refused: bool = False


class Guard(msgspec.Struct, kw_only=True):
    """What the target checks compare against: the operator's policy and the platform's own
    endpoints (its API port and NATS on this machine, the NATS servers' addresses elsewhere)."""

    policy: Policy
    local_ports: set[int]
    local_addresses: Container[IP]
    platform_endpoints: set[tuple[IP, int]]


def guard_for(settings: Settings) -> Guard:
    policy: Policy = "private" if settings.webhook_targets == "private" else "public"
    local_ports = {settings.port}
    endpoints: set[tuple[IP, int]] = set()
    for url in settings.nats_url.split(","):
        parts = urlsplit(url.strip())
        port = parts.port or 4222
        local_ports.add(port)
        for ip in _resolve_now(parts.hostname or "127.0.0.1", port):
            endpoints.add((ip, port))
    # An embedded nats-server's monitoring port is random; its ports file names it.
    for path in glob.glob(str(Path(settings.data_dir) / "nats" / "*.ports")):
        with contextlib.suppress(OSError, ValueError):
            for url in msgspec.json.decode(Path(path).read_bytes()).get("monitoring", []):
                local_ports.add(urlsplit(url).port or 0)
    return Guard(
        policy=policy, local_ports=local_ports, local_addresses=ThisMachine(), platform_endpoints=endpoints
    )


class ThisMachine:
    """This machine's addresses, every interface's: those a socket here can be bound to. Its
    host name's addresses were not enough: an API listening on every address is reached through
    each of them (a webhook to its own trigger URLs, say)."""

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((str(ip), 0))
        except OSError:  # not an address of this machine (or no such family here)
            return False
        return True


def _resolve_now(host: str, port: int) -> list[IP]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


#: A ``Retry-After`` beyond this is read as this (the retry policy's cap applies after).
MAX_RETRY_AFTER_S = 86400.0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit, not to float
        return min(float(value), MAX_RETRY_AFTER_S)
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        return min(max(0.0, parsedate_to_datetime(value).timestamp() - time.time()), MAX_RETRY_AFTER_S)
    return None


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie: http.cookiejar.Cookie, request: urllib.request.Request) -> bool:
        return False


class Sender:
    def __init__(
        self,
        guard: Guard,
        timeout_s: float,
        resolver: Resolver | None = None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the certificates trusted (default: httpx's CA bundle, loaded once)."""
        self.guard, self.timeout_s = guard, timeout_s
        self.connect_s = min(5.0, timeout_s)
        self.resolver = resolver or Resolver()
        verify = tls or httpx.create_ssl_context()
        self.http = self._client(verify, kept=100)
        self.https = self._client(verify, kept=0)  # see the module doc

    def _client(self, verify: ssl.SSLContext, *, kept: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=verify,
            cookies=http.cookiejar.CookieJar(_NoCookies()),
            timeout=httpx.Timeout(self.timeout_s, connect=self.connect_s),
            limits=httpx.Limits(max_connections=500, max_keepalive_connections=kept),
        )

    async def close(self) -> None:
        self.resolver.close()
        await self.http.aclose()
        await self.https.aclose()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> Attempt:
        t0 = time.monotonic()

        def done(
            status: int | None,
            error: str | None,
            excerpt: str = "",
            retry: float | None = None,
            refused: bool = False,
        ) -> Attempt:
            ms = int((time.monotonic() - t0) * 1000)
            return Attempt(
                status_code=status,
                error=error,
                latency_ms=ms,
                excerpt=excerpt,
                retry_after_s=retry,
                refused=refused,
            )

        try:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
            target = httpx.URL(url)
        except (ValueError, httpx.InvalidURL) as exc:  # stored before check_url refused it
            return done(None, f"refused: the url cannot be used ({exc})"[:300], refused=True)
        # The whole attempt, lookup included, within twice the timeout; the lookup within the
        # connect timeout (it is the first half of connecting).
        bound = self.timeout_s * 2
        try:
            addresses = await self.resolver.resolve(host, port, min(self.connect_s, bound))
        except ResolveTimeout as exc:
            return done(None, str(exc))
        except UnusableName as exc:  # no lookup can ever be made for it: no retry either
            return done(None, str(exc)[:300], refused=True)
        except OSError as exc:
            return done(None, f"cannot resolve {host}: {exc}")
        allowed, reasons = None, []
        for ip in addresses:
            reason = refusal(
                ip,
                port,
                policy=self.guard.policy,
                local_ports=self.guard.local_ports,
                local_addresses=self.guard.local_addresses,
                platform_endpoints=self.guard.platform_endpoints,
            )
            if reason is None:
                allowed = ip
                break
            reasons.append(reason)
        if allowed is None:
            return done(None, f"refused: {reasons[0] if reasons else 'no address'}", refused=True)
        target = target.copy_with(host=str(allowed))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        sent = {**headers, "Host": parts.netloc, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        try:
            async with asyncio.timeout(max(0.0, bound - (time.monotonic() - t0))):
                client = self.https if parts.scheme == "https" else self.http
                request = client.build_request(
                    "POST", target, content=body, headers=sent, extensions=extensions
                )
                response = await client.send(request, stream=True)
                try:
                    excerpt = b""
                    async for chunk in response.aiter_raw():
                        excerpt += chunk
                        if len(excerpt) >= EXCERPT_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return done(None, f"timed out after {self.timeout_s:g} s")
        except httpx.TimeoutException:
            return done(None, f"timed out after {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return done(None, f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)
        text = excerpt[:EXCERPT_BYTES].decode("utf-8", "replace")
        retry = (
            _retry_after(response.headers.get("retry-after")) if response.status_code in (429, 503) else None
        )
        return done(response.status_code, None, text, retry)
