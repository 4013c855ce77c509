"""Where outgoing webhooks may go (pure): the URL's shape, and each resolved address.

The URL is checked once when a webhook is saved; the addresses its host resolves to are checked
before every attempt (DNS can change between the two), and the request then goes to the checked
address, so a name cannot resolve to one address for the check and another for the connection.

Always refused: addresses nothing legitimate listens on for webhooks (unspecified, multicast,
link-local — which includes cloud metadata services at 169.254.169.254) and the platform's own
endpoints (its API and NATS). Loopback and private ranges are allowed only when the operator says
so (``CREWYARD_WEBHOOK_TARGETS=private``: single machine, tests); multi-machine deployments keep
the default, ``public``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Container
from typing import Literal
from urllib.parse import urlsplit

from crewyard.errors import CrewyardError

Policy = Literal["public", "private"]
POLICIES = ("public", "private")
MAX_URL = 2048
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(CrewyardError, ValueError):
    """A webhook target that may not be used (the message says why)."""


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL without credentials; else :class:`TargetRefused`."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise TargetRefused(f"url must be 1 to {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise TargetRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("url must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("url has no host")
    if not parts.hostname.isascii():
        # Spellings of a name differ between IDNA versions ("①" is "1" to one, refused by the
        # other): the host is taken only in the ASCII form every resolver reads the same way.
        raise TargetRefused("url's host must be in its ASCII form (xn--… for an international name)")
    if "@" in parts.netloc:
        raise TargetRefused("url must not contain credentials (user:password@); sign requests instead")
    if parts.fragment:
        raise TargetRefused("url must not have a #fragment")
    if port == 0:
        raise TargetRefused("url has port 0")
    literal = literal_address(parts.hostname)
    if literal is not None and (reason := always_refused(literal)):
        raise TargetRefused(f"url points to {reason}")
    return url


def literal_address(host: str) -> IP | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


#: RFC 6052's well-known NAT64 prefix: the IPv4 address is the last 32 bits, and a NAT64 gateway
#: on the way connects to it. (RFC 8215's local-use 64:ff9b:1::/48 may carry it in other bits,
#: by the operator's choice of format: it is judged as the private range it is.)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _plain(ip: IP) -> IP:
    """An IPv4 address carried in an IPv6 one is judged as that IPv4 address: mapped
    (``::ffff:127.0.0.1``), 6to4 (``2002:7f00:1::1``), Teredo (its client address) or NAT64
    (``64:ff9b::a9fe:a9fe``)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded
    return ip


def always_refused(ip: IP) -> str | None:
    ip = _plain(ip)
    if ip.is_unspecified:
        return f"an unspecified address ({ip})"
    if ip.is_multicast:
        return f"a multicast address ({ip})"
    if ip.is_link_local:
        return f"a link-local address ({ip})"
    return None


def is_private(ip: IP) -> bool:
    ip = _plain(ip)
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local  # fec0::/10, deprecated
    return ip.is_loopback or ip.is_private or ip.is_reserved or site_local or not ip.is_global


def refusal(
    ip: IP,
    port: int,
    *,
    policy: Policy,
    local_ports: Collection[int] = (),
    local_addresses: Container[IP] = (),
    platform_endpoints: Collection[tuple[IP, int]] = (),
) -> str | None:
    """Why a connection to ``ip:port`` is refused, or None when it is allowed.

    ``local_ports`` are the ports the platform listens on on this machine (its API, an embedded
    NATS), ``local_addresses`` this machine's own addresses, ``platform_endpoints`` the resolved
    addresses of the platform's other servers (the NATS cluster)."""
    ip = _plain(ip)
    if reason := always_refused(ip):
        return reason
    if (ip, port) in platform_endpoints or (
        port in local_ports and (ip.is_loopback or ip in local_addresses)
    ):
        return f"the platform's own endpoint {ip}:{port}"
    if policy == "public" and is_private(ip):
        return f"a private or loopback address ({ip}); the operator allows only public targets"
    return None
