"""The routes a sandbox's network is made with (:func:`crewyard.privatenet.plan`), decided
without a sandbox: the cloud metadata services webhooks refuse are unreachable from crews too."""

from __future__ import annotations

import ipaddress

import pytest

from crewyard import privatenet
from crewyard.core.targets import METADATA

#: A host with one address on one network (what /proc shows), so the plan does not depend on
#: the machine the tests run on.
FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 192.0.2.10
        /32 host LOCAL
"""
ROUTE = (
    "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n"
    "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
)
METADATA_V4 = sorted(ip for ip in METADATA if isinstance(ip, ipaddress.IPv4Address))


def _unreachable(plan: privatenet.NetworkPlan, address: ipaddress.IPv4Address) -> bool:
    return any(address in privatenet.IPv4(n) for n in plan.blocked)


@pytest.mark.parametrize(
    "allow",
    [(), ("100.64.0.0/10",), ("192.0.0.0/24",), ("100.100.100.0/24", "168.63.129.0/24", "192.0.0.192/32")],
)
def test_no_cloud_metadata_service_is_reachable_whatever_the_operator_allows(allow: tuple[str, ...]) -> None:
    plan = privatenet.plan(privatenet.NetworkPolicy(allow=allow), fib_trie=FIB_TRIE, route=ROUTE)
    assert len(METADATA_V4) >= 3  # Alibaba's, Azure's WireServer, Oracle Cloud Classic's
    for address in METADATA_V4:
        assert _unreachable(plan, address), (address, plan.blocked)
    # What was allowed is open around them: a neighbour of Alibaba's metadata service is not blocked.
    if "100.64.0.0/10" in allow:
        assert not _unreachable(plan, ipaddress.IPv4Address("100.100.100.199"))
