"""What a test left running in its event loop."""

from __future__ import annotations

import asyncio


async def tasks_left(before: set[asyncio.Task[object]], *, within: float = 5.0) -> list[asyncio.Task[object]]:
    """The tasks made since ``before`` that are still running ``within`` seconds from now (a task
    that ends a moment later, e.g. one cancelled on a close, is not left behind; a loop that
    retries forever is)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        left = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task() and not t.done()]
        if not left or loop.time() >= deadline:
            return left
        await asyncio.wait(left, timeout=min(0.1, max(deadline - loop.time(), 0)))
