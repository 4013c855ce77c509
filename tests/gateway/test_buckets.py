"""Token buckets keep their cost per request flat however many keys are active, and failed
authentications are counted per IPv6 /64 (one machine commonly holds a whole /64)."""

from __future__ import annotations

from crewyard.gateway.access import address_block
from crewyard.gateway.limits import PRUNE_AT, Buckets


def test_many_active_keys_are_not_all_looked_at_on_every_request() -> None:
    """Past 10,000 keys, every request made the dict again (all of them active: all kept): 30,000
    addresses failing within a minute cost 2 ms a request at the end, 66 s in all."""
    buckets = Buckets(rate=1.0)
    made = 0
    for i in range(3 * PRUNE_AT):
        before = buckets.state
        assert buckets.take(f"198.51.{i // 256 % 256}.{i % 256}-{i}") == 0.0
        made += buckets.state is not before
    assert made <= 3
    assert len(buckets.state) == 3 * PRUNE_AT  # all active: none forgotten


def test_an_ipv6_slash_64_is_one_address_for_failed_authentications() -> None:
    assert address_block("2001:db8:1:2:aaaa::1") == address_block("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert address_block("2001:db8:1:2::1") != address_block("2001:db8:1:3::1")
    assert address_block("203.0.113.7") == "203.0.113.7"
    assert address_block("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_block("testclient") == "testclient"  # not an address: as it is
