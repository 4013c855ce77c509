"""Token buckets: at most ``rate`` requests a second per key, in bursts of ``burst``."""

from __future__ import annotations

import math
import time

from .errors import ApiError

#: How many keys a set of buckets holds before it forgets the idle ones (see ``Buckets``).
PRUNE_AT = 10_000
#: A key unused this long has a full bucket again (a burst refills in seconds): it is forgotten.
IDLE_S = 60.0


class Buckets:
    """One bucket per key (a trigger, an API key), in this process's memory."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else 4 * rate)
        self.state: dict[str, tuple[float, float]] = {}
        #: Idle keys are forgotten once there are this many (then twice as many as were left):
        #: a look at every key per request, once over a fixed count, cost each request the
        #: whole dict while more keys than that were active (thousands of addresses).
        self._prune_at = PRUNE_AT

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self.state.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def wait(self, key: str) -> float:
        """What :meth:`take` would answer, without taking."""
        tokens = self._tokens(key, time.monotonic())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic()
        tokens = self._tokens(key, now)
        if tokens < 1:
            self.state[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self.state[key] = (tokens - 1, now)
        if len(self.state) > self._prune_at:  # forget idle keys (their buckets are full again)
            self.state = {k: v for k, v in self.state.items() if now - v[1] < IDLE_S}
            self._prune_at = max(PRUNE_AT, 2 * len(self.state))
        return 0.0


class TooMany(ApiError):
    """429 with ``Retry-After`` (whole seconds, at least 1)."""

    def __init__(self, retry_after: float, message: str, code: str = "rate_limited") -> None:
        super().__init__(429, code, message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}
