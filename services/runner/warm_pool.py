"""One pool of warm sandboxes: which runs it serves (its key), what it prepares its sandboxes from
(its template and fingerprint), what it holds (idle and warming sandboxes, their memory) and
what it aims for (its target between ``low`` and ``high``). :class:`~.pools.Pools` decides.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from .backends import RunSpec
from .warm import WarmSandbox

#: What a sandbox is counted as before anything of its pool was measured, without a memory limit.
DEFAULT_ESTIMATE = 1 << 30


class PoolKey(NamedTuple):
    deployment_id: str
    environment: str


class Renewal(NamedTuple):
    """What a pool prepares its sandboxes from: a run's spec, and its fingerprint."""

    key: PoolKey
    template: RunSpec
    fingerprint: str


class Placeholder:
    """A sandbox about to start: counted against the budget before it exists."""

    def __init__(self, spec: RunSpec, fingerprint: str) -> None:
        self.spec, self.fingerprint = spec, fingerprint
        self.memory: int | None = None


class Pool:
    def __init__(self, renewal: Renewal, *, project: str, name: str, low: int, high: int) -> None:
        self.key, self.template, self.fingerprint = renewal
        self.project, self.name = project, name
        self.low, self.high = low, max(low, high)
        self.target = low
        self.idle: list[WarmSandbox] = []
        self.warming: set[WarmSandbox | Placeholder] = set()
        self.last_used = self.last_miss = time.monotonic()
        #: The most one of its sandboxes was seen to hold (None: never measured).
        self.memory: int | None = None
        #: The most its fork server was seen to hold (None: never measured): what a new server
        #: is counted as, so that one evicted for the budget is not started again to no avail.
        self.server_memory: int | None = None
        #: Waiting for a new template (a change retired its sandboxes).
        self.stale = False
        #: Where its environment's pointer moved (a deploy, promote or rollback): renewed there.
        self.moving_to: PoolKey | None = None
        self.failures = 0
        self.retry_at = 0.0
        #: No refill before this (a run has just taken one of its sandboxes).
        self.refill_at = 0.0
        #: The fork server its sandboxes and cold runs are forked from (backends that can fork).
        self.server: WarmSandbox | Placeholder | None = None
        #: False once its crew turned out not to be forkable (or no server could start): its
        #: sandboxes are started one by one, as on backends that cannot fork.
        self.forking = True

    def estimate(self) -> int:
        """What a new sandbox of this pool is counted as until it is measured."""
        if self.memory is not None:
            return self.memory
        return self.template.limits.memory_bytes or DEFAULT_ESTIMATE

    def server_estimate(self) -> int:
        """What a new fork server of this pool is counted as until it is measured."""
        return self.server_memory or self.estimate()

    def held(self) -> int:
        return self._server_held() + self._idle_held() + self.estimate() * len(self.warming)

    def evictable_server(self) -> WarmSandbox | None:
        """Its fork server, when the budget may evict it: a ready one (one importing, or a
        placeholder, finishes first)."""
        server = self.server
        return server if isinstance(server, WarmSandbox) and server.usable else None

    def evictable(self) -> int:
        """What evicting its idle sandboxes and its fork server would take off :meth:`held`."""
        return self._idle_held() + (self._server_held() if self.evictable_server() else 0)

    def _server_held(self) -> int:
        return 0 if self.server is None else self.server.memory or self.server_estimate()

    def _idle_held(self) -> int:
        return sum(s.memory or self.estimate() for s in self.idle)

    def serving(self, fingerprint: str) -> WarmSandbox | None:
        """Its fork server, when it is ready and prepared as a run with ``fingerprint`` would be."""
        server = self.server
        if isinstance(server, WarmSandbox) and server.usable and server.fingerprint == fingerprint:
            return server
        return None
