"""Where outgoing webhooks may go (pure): the URL's shape, and each resolved address.

The URL is checked once when a webhook is saved; the addresses its host resolves to are checked
before every attempt (DNS can change between the two), and the request then goes to the checked
address, so a name cannot resolve to one address for the check and another for the connection.

Always refused: addresses nothing legitimate listens on for webhooks (unspecified, multicast,
link-local — which includes cloud metadata services at 169.254.169.254), the cloud metadata
services that are not link-local (:data:`METADATA`: AWS's over IPv6, Alibaba's, Azure's
WireServer, Oracle Cloud Classic's), any of these carried in an IPv6 address (mapped, 6to4,
Teredo, NAT64 — the local-use NAT64 prefix in each of its formats) and the platform's own
endpoints (its API and NATS). An IPv6 zone id (``fe80::1%eth0``) is refused in a URL, and
dropped from any address before it is compared: ``ipaddress`` keeps it, and a zoned address is
unequal to the same address without one, so ``[fd00:ec2::254%1]`` would not be "in" the metadata
addresses nor ``[::1%1]`` one of the platform's endpoints. Loopback and private ranges are
allowed only when the operator says so (``CREWYARD_WEBHOOK_TARGETS=private``: single machine,
tests); multi-machine deployments keep the default, ``public``.
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
#: DNS limits (RFC 1035 2.3.4): a label is 1 to 63 octets, a name at most 253 written out (255 on
#: the wire). The resolver refuses anything else outright (not even as a failed lookup).
MAX_LABEL, MAX_NAME = 63, 253
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
    if "%" in parts.hostname:
        # A zone id names an interface of the notifier's machine, nothing a receiver elsewhere has;
        # it also makes the address compare unequal to itself without one. (A name never holds "%".)
        raise TargetRefused("url's host must not contain % (an IPv6 zone id such as [fe80::1%eth0])")
    if "@" in parts.netloc:
        raise TargetRefused("url must not contain credentials (user:password@); sign requests instead")
    if parts.fragment:
        raise TargetRefused("url must not have a #fragment")
    if port == 0:
        raise TargetRefused("url has port 0")
    literal = literal_address(parts.hostname)
    if literal is None:
        check_host_name(parts.hostname)
    elif reason := always_refused(literal):
        raise TargetRefused(f"url points to {reason}")
    return url


def check_host_name(host: str) -> None:
    """:class:`TargetRefused` unless ``host`` (ASCII, not an address) is a name a lookup can be
    made for: labels of 1 to :data:`MAX_LABEL` characters, at most :data:`MAX_NAME` in all.

    One trailing dot is the fully qualified spelling of the same name (``example.com.``) and is
    allowed, as resolvers allow it; it is not counted in the length. Any other empty label
    (``a..com``, ``.a.com``, ``a.com..``) is refused: the resolver cannot even encode it."""
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or any(not label for label in labels):
        raise TargetRefused("url's host has an empty label (two dots in a row, or a leading dot)")
    if any(len(label) > MAX_LABEL for label in labels):
        raise TargetRefused(f"url's host has a label longer than {MAX_LABEL} characters")
    if len(name) > MAX_NAME:
        raise TargetRefused(f"url's host is longer than {MAX_NAME} characters")


def literal_address(host: str) -> IP | None:
    """The address ``host`` is written as (zone id dropped), or None for a name."""
    try:
        return unzoned(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def unzoned(ip: IP) -> IP:
    """``ip`` without its IPv6 zone id (``fd00:ec2::254%1`` → ``fd00:ec2::254``): ``ipaddress``
    keeps the zone, and a zoned address equals (and hashes like) no address without one, so every
    comparison with a set of addresses is made with it dropped."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return ipaddress.IPv6Address(int(ip))
    return ip


#: RFC 6052's well-known NAT64 prefix: the IPv4 address is the last 32 bits, and a NAT64 gateway
#: on the way connects to it.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: RFC 8215's local-use NAT64 prefix: the operator picks a /48 to /96 inside it, and with it
#: where the IPv4 address sits (RFC 6052 §2.2). Its addresses are a private range; each way of
#: reading the IPv4 address out of one is checked against what is always refused.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
#: Cloud metadata services outside link-local space (169.254.0.0/16 is refused as a whole): AWS
#: IMDS over IPv6, Alibaba Cloud's, Azure's WireServer (host agent: certificates, extension
#: settings), Oracle Cloud Classic's.
METADATA: frozenset[IP] = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "168.63.129.16", "192.0.0.192")
)


def _bits(value: int, start: int, end: int) -> int:
    """Bits ``start`` to ``end`` (exclusive, counted from the left) of a 128-bit address."""
    return (value >> (128 - end)) & ((1 << (end - start)) - 1)


def _local_nat64_readings(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 address a local-use NAT64 address carries, read with each prefix length a /48
    allows (48, 56, 64, 96; bits 64-71 are always skipped)."""
    x = int(ip)
    return [
        ipaddress.IPv4Address(v)
        for v in (
            _bits(x, 48, 64) << 16 | _bits(x, 72, 88),
            _bits(x, 56, 64) << 24 | _bits(x, 72, 96),
            _bits(x, 72, 104),
            _bits(x, 96, 128),
        )
    ]


def _plain(ip: IP) -> IP:
    """An IPv4 address carried in an IPv6 one is judged as that IPv4 address: mapped
    (``::ffff:127.0.0.1``), 6to4 (``2002:7f00:1::1``), Teredo (its client address) or NAT64
    (``64:ff9b::a9fe:a9fe``). A zone id is dropped (:func:`unzoned`)."""
    ip = unzoned(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded
    return ip


def always_refused(ip: IP) -> str | None:
    ip = _plain(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64:
        # A reading of 0.0.0.0 is only the zero padding of another format, unless all are.
        readings = [v4 for v4 in _local_nat64_readings(ip) if not v4.is_unspecified] or [
            ipaddress.IPv4Address(0)
        ]
        for inner in readings:
            if reason := _never(inner):
                return f"{reason} through NAT64 ({ip})"
    return _never(ip)


def _never(ip: IP) -> str | None:
    if ip in METADATA:
        return f"a cloud metadata address ({ip})"
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
    local_nat64 = isinstance(ip, ipaddress.IPv6Address) and ip in _LOCAL_NAT64
    return ip.is_loopback or ip.is_private or ip.is_reserved or site_local or local_nat64 or not ip.is_global


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
