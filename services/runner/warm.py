"""One warm sandbox: started before any run takes it, its crew imported, waiting for its input.

The backend starts it like a run's sandbox (same isolation, limits and network), but the runtime
gets only the protocol's ``prepare``: it applies the crew's environment, imports the crew's
module and framework and says ``ready``, then blocks until ``start``. A run that takes it
(:meth:`WarmSandbox.take`) gets a :class:`~.backends.RunHandle` whose output begins with
everything the runtime said while it waited (``hello``, ``ready``, what the import printed), so
the runner reads a warm run exactly as a cold one; the runner then sends ``start``. A sandbox
serves one run and is removed with it, like any other.

One task reads the sandbox's output for its whole life and forwards each line to a queue: nothing
is lost between warm-up and hand-out, and the backend's own reader is never cancelled midway. An
idle sandbox may say a little (a framework's import-time warnings); one that keeps talking, dies,
or reports an error instead of ``ready`` is given up (:attr:`failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from crewyard.lines import MAX_LINE, LineQueue

from .backends import BackendError, ExitStatus, RunHandle, RunSpec
from .protocol import SPOKEN, VERSION, CrewError, Hello, Ready, Start, ThreadStart, decode_line, encode

#: What an idle sandbox may write before a run takes it; more, and it is given up.
IDLE_LINES = 1_000
IDLE_BYTES = 1 << 20


class WarmSandbox:
    def __init__(self, spec: RunSpec, handle: RunHandle, fingerprint: str, *, serves: bool = False) -> None:
        self.spec = spec
        #: A fork server: no run takes it, so its output is watched, never kept for one.
        self.serves = serves
        self.handle = handle
        #: What the sandbox was prepared with (see ``pools.fingerprint``); a run takes it only
        #: when its own is the same.
        self.fingerprint = fingerprint
        self.born = time.monotonic()
        self.ready_at: float | None = None
        #: Why the sandbox cannot serve a run (it died, failed to import the crew …), once known.
        self.failure: str | None = None
        #: The memory it held when last measured (None: not yet).
        self.memory: int | None = None
        self.taken = False
        #: Its output, for the run that takes it; while it is full the sandbox's output waits.
        self._lines = LineQueue()
        self._said = [0, 0]  # lines and bytes while idle
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @property
    def usable(self) -> bool:
        return self._ready.is_set() and self.failure is None and not self._ended.is_set()

    async def _read(self) -> None:
        try:
            async for stream, raw in self.handle.output():
                if not self.taken:
                    self._watch(stream, raw)
                if not self.serves:
                    await self._lines.put((stream, raw))
        except Exception as exc:  # a broken output stream: the run that takes it sees it end
            self._give_up(f"its output broke: {exc}")
        finally:
            self._lines.close()
            self._ended.set()
            if not self.taken:
                self._give_up("it ended before a run took it")

    def _watch(self, stream: str, raw: bytes) -> None:
        self._said[0] += 1
        self._said[1] += len(raw)
        if self._said[0] > IDLE_LINES or self._said[1] > IDLE_BYTES:
            self._give_up(f"it wrote more than {IDLE_LINES} lines or {IDLE_BYTES} bytes while idle")
        if stream != "proto" or self._ready.is_set():
            return
        message = decode_line(raw, MAX_LINE)
        if isinstance(message, Hello) and message.v not in SPOKEN:
            self._give_up(f"its runtime speaks protocol v{message.v}, this runner v{VERSION}")
        elif isinstance(message, CrewError):
            self._give_up(f"the crew could not be prepared: {message.message}")
        elif isinstance(message, Ready):
            self.ready_at = time.monotonic()
            self._ready.set()

    def _give_up(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
        self._ready.set()  # wakes whoever waits for it to be ready

    async def until_ready(self, timeout_s: float) -> bool:
        """Wait until the crew is imported; False when it cannot serve (see :attr:`failure`)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            self._give_up(f"it was not ready within {timeout_s:g} s")
        return self.usable

    async def ended(self) -> None:
        """Until the sandbox's output has closed (it exited)."""
        await self._ended.wait()

    async def measure(self) -> int | None:
        with contextlib.suppress(BackendError, OSError):
            used = await self.handle.memory_used()
            if used is not None:
                self.memory = used
        return self.memory

    def take(self, run_id: str, input: dict[str, Any], thread: ThreadStart | None = None) -> TakenSandbox:
        """Hand the sandbox to a run (a thread run with its ``thread``): its ``start`` goes out
        now, its output continues in order."""
        self.taken = True
        taken = TakenSandbox(self)
        start = Start(run_id=run_id, input=input, thread=thread)
        taken.starting = asyncio.create_task(self.handle.send(encode(start)))
        return taken

    async def remove(self) -> None:
        """End the sandbox and remove everything of it (also its scratch folder)."""
        try:
            with contextlib.suppress(BackendError):
                await self.handle.remove()
        finally:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            await asyncio.to_thread(shutil.rmtree, self.spec.work_dir, True)


class TakenSandbox:
    """The run's handle on a warm sandbox: the sandbox's handle, its output read from the start."""

    def __init__(self, sandbox: WarmSandbox) -> None:
        self.sandbox = sandbox
        self.starting: asyncio.Task[None] | None = None

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        lines = self.sandbox._lines
        while (item := await lines.get()) is not None:
            yield item

    async def wait(self) -> ExitStatus:
        return await self.sandbox.handle.wait()

    async def send(self, line: bytes) -> None:
        await self.sandbox.handle.send(line)

    async def end_input(self) -> None:
        await self.sandbox.handle.end_input()

    async def kill(self, grace_s: float) -> None:
        await self.sandbox.handle.kill(grace_s)

    async def collect_artifacts(self) -> Path:
        return await self.sandbox.handle.collect_artifacts()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.sandbox.handle.skipped

    async def memory_used(self) -> int | None:
        return await self.sandbox.handle.memory_used()

    async def files_folder(self) -> Path | None:
        return await self.sandbox.handle.files_folder()

    async def processes(self) -> set[int] | None:
        return await self.sandbox.handle.processes()

    async def remove(self) -> None:
        if self.starting is not None:
            self.starting.cancel()
        await self.sandbox.remove()
