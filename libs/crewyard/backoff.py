"""Trying again until a deadline, with pauses that double (pure but for the clock and sleep).

What waits out a broker restart, a read model catching up, or an append that lost a race to
another instance of the same service: each try that fails pauses, each pause twice the last up
to a ceiling, until the deadline has passed. ``jitter`` spreads the pauses of instances that
lost the same race (each from half to one and a half of its length), so they do not collide
again in step.
"""

from __future__ import annotations

import asyncio
import random
import time


class Backoff:
    def __init__(self, seconds: float, *, first: float, most: float, jitter: bool = False) -> None:
        self.deadline = time.monotonic() + seconds
        self.delay, self.most, self.jitter = first, most, jitter

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (what to do then is the caller's)."""
        return time.monotonic() > self.deadline

    async def pause(self) -> None:
        """Sleep the next pause."""
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.5) if self.jitter else self.delay)
        self.delay = min(self.delay * 2, self.most)
