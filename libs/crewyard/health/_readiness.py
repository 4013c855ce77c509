"""Is this service ready? One answer, used by every service's ``/readyz`` and by ``deploy/`` probes.

Ready means all of:

- **nats** — connected (before that: what start-up is waiting for).
- **stream** — the event stream's leader answers (``Probe.stream_head``).
- **writes** — JetStream acknowledged a heartbeat write (``Probe.heartbeat``); only for services
  that append events (a projector only reads, and need not be allowed to write).
- **read_model** — for services with a read model (gateway, projector): it has applied the stream
  up to at most ``max_lag`` events behind the head.

A check costs a few small requests, so answers are shared for ``cache_s`` (probes and curious
clients may ask as often as they like) and bounded by ``timeout_s`` (an outage answers "not
ready" in seconds, never hangs the probe).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

import msgspec

from crewyard.eventstore import EventStore, Probe, StoreUnavailable


class Report(msgspec.Struct, frozen=True):
    service: str
    ready: bool
    checks: dict[str, str]
    reasons: list[str]

    def body(self) -> dict[str, object]:
        """The JSON answer: 200 with the checks, or 503 in the API's error format plus reasons."""
        out: dict[str, object] = {
            "status": "ready" if self.ready else "not ready",
            "service": self.service,
            "checks": self.checks,
        }
        if not self.ready:
            out["reasons"] = self.reasons
            out["error"] = {"code": "not_ready", "message": "; ".join(self.reasons)}
        return out


class Readiness:
    def __init__(
        self,
        service: str,
        *,
        instance: str,
        writes: bool = True,
        position: Callable[[], Awaitable[int]] | None = None,
        max_lag: int = 10_000,
        timeout_s: float = 3.0,
        cache_s: float = 1.0,
    ) -> None:
        self.service = service
        self.writes = writes
        self.position = position
        self.max_lag = max_lag
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        #: This instance's heartbeat key (key-value keys allow letters, digits, ``-``, ``_``, ``.``).
        self.key = f"{service}." + re.sub(r"[^A-Za-z0-9_-]", "_", instance)
        self.waiting_for = "start-up"
        self._store: EventStore | None = None
        self._probe: Probe | None = None
        self._last: tuple[float, Report] | None = None
        self._lock = asyncio.Lock()

    def waiting(self, reason: str) -> None:
        """What start-up waits for (shown as the reason until a store is attached)."""
        self.waiting_for = reason

    def attach(self, store: EventStore) -> None:
        self._store = store
        self._probe = Probe(store)
        self._last = None

    async def check(self) -> Report:
        async with self._lock:  # concurrent askers share one check
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_s:
                return self._last[1]
            report = await self._check()
            self._last = (time.monotonic(), report)
            return report

    async def _check(self) -> Report:
        checks: dict[str, str] = {}
        reasons: list[str] = []
        store, probe = self._store, self._probe
        if store is None or probe is None:
            checks["nats"] = f"waiting: {self.waiting_for}"
            return Report(self.service, False, checks, [f"waiting for {self.waiting_for}"])
        if not store.nc.is_connected:
            checks["nats"] = "disconnected (reconnecting)"
            return Report(self.service, False, checks, ["not connected to NATS"])
        checks["nats"] = "connected"
        try:
            async with asyncio.timeout(self.timeout_s):
                head = await probe.stream_head()
                checks["stream"] = f"leader answers, head at sequence {head}"
                if self.writes:
                    await probe.heartbeat(self.key)
                    checks["writes"] = "acknowledged"
                if self.position is not None:
                    pos = await self._position()
                    lag = max(head - pos, 0)
                    checks["read_model"] = f"at sequence {pos}, {lag} behind"
                    if lag > self.max_lag:
                        reasons.append(f"read model is {lag} events behind the stream (bound {self.max_lag})")
        except StoreUnavailable as exc:
            reasons.append(f"JetStream: {exc}")
        except TimeoutError:
            reasons.append(f"JetStream did not answer within {self.timeout_s:g} s")
        return Report(self.service, not reasons, checks, reasons)

    async def _position(self) -> int:
        assert self.position is not None
        try:
            return await self.position()
        except Exception as exc:  # a read model that cannot say where it is, is not ready
            raise StoreUnavailable(f"read model position unreadable: {exc!r}") from exc
