"""A run's output waits in a bounded queue: a crew writing faster than its run is handled waits in
its pipe instead of growing the runner's memory (hundreds of megabytes while a reader waited)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from crewyard.lines import QUEUE_BYTES, LineQueue, merge_lines
from crewyard.runner.warm import WarmSandbox

LINE = b"x" * 1023 + b"\n"
FLOOD = 32 * 1024 * 1024  # far past the queue's bound and a pipe's buffer
WRITER = f"import sys\nfor _ in range({FLOOD // len(LINE)}):\n    sys.stderr.buffer.write({LINE!r})\n"


async def test_a_writer_waits_while_the_reader_does_not_read_and_nothing_is_lost() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = merge_lines({"proto": proc.stdout, "stderr": proc.stderr})
    got = len((await anext(lines))[1])
    # The reader takes nothing more: the crew cannot write all of it (it ended at once, its
    # output held in the runner's memory).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), 2.0)
    async for _, line in lines:
        got += len(line)
    assert await proc.wait() == 0
    assert got == FLOOD // len(LINE) * (len(LINE) - 1)


async def test_the_queue_holds_its_bound_plus_a_line_and_ends_once_emptied() -> None:
    queue = LineQueue(max_bytes=10)
    await queue.put(("stderr", b"123456"))
    await queue.put(("stderr", b"123456"))  # past the bound by this one line
    third = asyncio.create_task(queue.put(("stderr", b"7")))
    await asyncio.sleep(0.05)
    assert not third.done() and queue.held == 12
    assert await queue.get() == ("stderr", b"123456")
    await asyncio.wait_for(third, 1.0)
    queue.close()
    assert [await queue.get(), await queue.get(), await queue.get()] == [
        ("stderr", b"123456"),
        ("stderr", b"7"),
        None,
    ]


class _Flooding:
    """A sandbox's handle whose crew writes as fast as it is read."""

    def __init__(self) -> None:
        self.written = 0

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        while True:
            self.written += len(LINE)
            yield "stderr", LINE
            await asyncio.sleep(0)

    async def send(self, line: bytes) -> None:
        return None

    async def remove(self) -> None:
        return None


async def test_a_warm_sandboxs_output_waits_while_its_run_reads_nothing(tmp_path: Path) -> None:
    handle = _Flooding()
    sandbox = WarmSandbox(SimpleNamespace(work_dir=tmp_path / "work"), handle, "fp")  # type: ignore[arg-type]
    sandbox.take("run_1", {})
    await asyncio.sleep(0.5)
    try:
        assert handle.written <= QUEUE_BYTES + 2 * len(LINE)
    finally:
        await sandbox.remove()


async def test_a_fork_servers_output_is_watched_not_kept(tmp_path: Path) -> None:
    """No run takes a fork server: its output kept for one filled the queue, and the server's
    output then stopped being read (its end never seen, its pool never told)."""
    handle = _Flooding()
    server = WarmSandbox(SimpleNamespace(work_dir=tmp_path / "work"), handle, "fp", serves=True)  # type: ignore[arg-type]
    try:
        for _ in range(1_000):
            if handle.written > 2 * QUEUE_BYTES:
                break
            await asyncio.sleep(0.01)
        assert handle.written > 2 * QUEUE_BYTES and server._lines.held == 0
    finally:
        await server.remove()
