"""Seeing what a NATS server refuses: it reports permission violations to the client
asynchronously (the request itself just gets no answer), so tests wait for that report."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client, RawCredentials

from crewyard.auth import inbox_prefix_of


@dataclass
class Watched:
    """A connection that records what the server refused (it reports violations asynchronously)."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    async def refused(
        self, action: Callable[[], Awaitable[Any]], subject: str, timeout: float = 15.0
    ) -> None:
        """Run ``action`` and wait until the server reports a permissions violation on ``subject``
        (compared in lower case, as the client reports it). The action itself is then given up."""
        wanted = subject.lower()
        task = asyncio.ensure_future(action())
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            # An action that ends without an error proves nothing yet: a subscribe or publish
            # returns before the server has read it, and its report may come much later on a
            # busy machine. Only the deadline decides.
            while not any("permissions violation" in e and wanted in e for e in self.errors):
                if asyncio.get_running_loop().time() > deadline:
                    allowed = task.done() and task.exception() is None
                    verdict = f"was allowed: {task.result()!r}" if allowed else "no violation"
                    raise AssertionError(f"{subject}: {verdict}; errors: {self.errors}")
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


async def watched(url: str, creds: str, **options: Any) -> Watched:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    prefix = inbox_prefix_of(creds)
    if prefix:
        options.setdefault("inbox_prefix", prefix)
    nc = await nats.connect(
        url, user_credentials=RawCredentials(creds), error_cb=on_error, max_reconnect_attempts=2, **options
    )
    return Watched(nc, errors)
