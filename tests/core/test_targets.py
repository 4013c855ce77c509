"""Where outgoing webhooks may go: URL shape, resolved addresses, the platform's own endpoints."""

from __future__ import annotations

import ipaddress

import pytest

from crewyard.core.targets import TargetRefused, check_url, refusal


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://hooks.example.com:8443/a?b=c",
        "http://127.0.0.1:9000/x",
        "http://[::1]:80/",
        "http://example.com./hook",  # the fully qualified spelling of the same name
        "http://" + "a" * 63 + ".example.com/",
        "http://" + ".".join(["a" * 63] * 4)[:253] + "/",
    ],
)
def test_plain_http_urls_are_accepted(url):
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "http"),
        ("file:///etc/passwd", "http"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://token@example.com/", "credentials"),
        ("http:///nohost", "no host"),
        ("http://example.com/a b", "spaces"),
        ("http://example.com/\nx", "spaces"),
        ("http://example.com:99999/", "not valid"),
        ("http://example.com/#frag", "fragment"),
        ("http://0.0.0.0:80/", "unspecified"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://example.com/" + "a" * 3000, "characters"),
        ("http://\u2460.\u2460.\u2460.\u2460/x", "ASCII form"),
        ("http://b\u00fccher.example/", "ASCII form"),
        ("http://a..com/", "empty label"),
        ("http://.a.com/", "empty label"),
        ("http://a.com../", "empty label"),
        ("http://./", "empty label"),
        ("http://" + "a" * 64 + ".example.com/", "longer than 63"),
        ("http://" + ".".join(["a" * 63] * 4) + "/", "longer than 253"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url, why):
    with pytest.raises(TargetRefused, match=why):
        check_url(url)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_private_and_loopback_only_when_the_operator_allows_them():
    for addr in ("127.0.0.1", "10.1.2.3", "192.168.0.5", "172.16.0.1", "::1", "fd00::1", "::ffff:127.0.0.1"):
        assert refusal(ip(addr), 80, policy="public") is not None, addr
        assert refusal(ip(addr), 80, policy="private") is None, addr
    assert refusal(ip("93.184.216.34"), 443, policy="public") is None
    # IPv4 carried in IPv6 is judged as the IPv4 address: 6to4, Teredo; site-local is not public.
    for addr in ("2002:7f00:1::1", "2002:a01:203::1", "2001:0:4136:e378:8000:63bf:80ff:fffe", "fec0::1"):
        assert refusal(ip(addr), 80, policy="public") is not None, addr
    assert refusal(ip("2002:5db8:d822::1"), 80, policy="public") is None  # 93.184.216.34 in 6to4
    assert refusal(ip("2002:a9fe:a9fe::1"), 80, policy="private") is not None  # 169.254.169.254
    # NAT64 (well-known and local-use prefixes): a gateway on the way connects to the IPv4 inside.
    assert "link-local" in (refusal(ip("64:ff9b::a9fe:a9fe"), 80, policy="private") or "")
    assert refusal(ip("64:ff9b::5db8:d822"), 80, policy="public") is None  # 93.184.216.34
    # The local-use prefix may hold the IPv4 address in other bits (169.254.169.254 in the /48
    # format here, 8.8.8.8 read as the last 32 bits): a private range, never a public target.
    assert refusal(ip("64:ff9b:1:a9fe:a9:fe00:808:808"), 80, policy="public") is not None


def test_the_platform_own_endpoints_are_refused_whatever_the_policy():
    local = {8080, 4222}
    assert refusal(ip("127.0.0.1"), 8080, policy="private", local_ports=local) is not None
    assert refusal(ip("127.0.0.2"), 4222, policy="private", local_ports=local) is not None
    assert refusal(ip("::ffff:127.0.0.1"), 8080, policy="private", local_ports=local) is not None
    assert refusal(
        ip("10.0.0.7"), 8080, policy="private", local_addresses={ip("10.0.0.7")}, local_ports=local
    )
    assert refusal(ip("127.0.0.1"), 9000, policy="private", local_ports=local) is None
    nats = {(ip("10.0.0.9"), 4222)}
    assert refusal(ip("10.0.0.9"), 4222, policy="private", platform_endpoints=nats) is not None
    assert refusal(ip("10.0.0.9"), 4223, policy="private", platform_endpoints=nats) is None
    assert refusal(ip("169.254.169.254"), 80, policy="private") is not None


@pytest.mark.parametrize(
    "addr",
    [
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure WireServer
        "192.0.0.192",  # Oracle Cloud Classic metadata
        "::ffff:100.100.100.200",
        "64:ff9b::6464:64c8",  # 100.100.100.200 through the well-known NAT64 prefix
        "64:ff9b:1::a9fe:a9fe",  # 169.254.169.254 through local-use NAT64, /96 format
        "64:ff9b:1::6464:64c8",  # 100.100.100.200, /96 format
        "64:ff9b:1:a9fe:a9:fe00::",  # 169.254.169.254, /48 format
        "64:ff9b:1:a9:fe:a9fe::",  # /56 format
        "64:ff9b:1:0:a9:fea9:fe00:0",  # /64 format
        "64:ff9b:1::e000:1",  # 224.0.0.1, multicast
    ],
)
def test_cloud_metadata_is_refused_whatever_the_policy_and_however_it_is_written(addr):
    assert refusal(ip(addr), 80, policy="private") is not None, addr
    assert refusal(ip(addr), 80, policy="public") is not None, addr
    with pytest.raises(TargetRefused, match=r"metadata|link-local|multicast"):
        check_url(f"http://[{addr}]/" if ":" in addr else f"http://{addr}/")


def test_local_use_nat64_of_an_ordinary_address_is_only_private():
    # Zero padding of one format is not read as 0.0.0.0 in another: 10.0.0.1 in /96 format.
    assert refusal(ip("64:ff9b:1::a00:1"), 80, policy="private") is None
    assert refusal(ip("64:ff9b:1::a00:1"), 80, policy="public") is not None
    assert refusal(ip("fd00:ec2::253"), 80, policy="private") is None  # a private address, no more


@pytest.mark.parametrize(
    "url",
    [
        "http://[fd00:ec2::254%1]/latest/meta-data",  # AWS metadata over IPv6, with a zone
        "http://[::1%1]:8080/",
        "http://[fd12::9%25eth0]:4222/",  # RFC 6874's percent-encoded spelling
        "http://[::ffff:100.100.100.200%1]/",
    ],
)
def test_a_url_whose_host_holds_a_zone_id_is_refused(url):
    with pytest.raises(TargetRefused, match="zone id"):
        check_url(url)


def test_a_zoned_address_is_judged_as_the_same_address_without_its_zone():
    # ipaddress keeps the zone, and "fd00:ec2::254%1" equals no address in a set: stored before
    # check_url refused zones, or reached any other way, it must still be refused.
    for policy in ("private", "public"):
        assert "metadata" in (refusal(ip("fd00:ec2::254%1"), 80, policy=policy) or ""), policy
        assert "metadata" in (refusal(ip("::ffff:168.63.129.16%eth0"), 80, policy=policy) or ""), policy
    nats = {(ip("fd12::9"), 4222)}
    assert refusal(ip("fd12::9%1"), 4222, policy="private", platform_endpoints=nats) is not None
    here = {ip("fd12::7")}
    assert refusal(ip("fd12::7%1"), 8080, policy="private", local_ports={8080}, local_addresses=here)
    assert refusal(ip("fd12::8%1"), 8080, policy="private", local_ports={8080}, local_addresses=here) is None
