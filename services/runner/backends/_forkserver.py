"""Runs forked from a fork server: the runner's side of ``crewyard_runtime/forkserver.py``.

A backend that can (``start_server``) starts the runtime of a deployment as it would start a
warm sandbox, plus one end of a ``SOCK_SEQPACKET`` socket: the runtime imports the crew under the
deployment's environment, says ``ready``, and from then on forks one fresh process per request
(:meth:`ForkServer.fork`), never seeing a run's input. Per run the runner makes the run's pipes
and a control socket, sends them with the request, learns the keeper's pid from its credentials
(the kernel's, not the crew's word), lets the backend place it (``place``: control groups), says
``go``, and reads the run's output as it would a started process's. The run's handle
(:class:`ForkedHandle`) behaves as every backend's handle.

Retiring a server closes its socket only: the server then exits once its runs have ended, so a
change of environment never cuts a run short. A server dies with the runner (the backend starts
it so), its keepers with it and the runs with their keepers (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec

from crewyard import cgroups
from crewyard.lines import merge_lines

from ..protocol import Start, encode
from ._artifacts import Skipped
from ._base import BackendError, ExitStatus, NoLinger, RunHandle, RunSpec
from ._stdin import StdinWriter

#: How long a server may take to fork and report a run's keeper.
FORK_TIMEOUT_S = 30.0
_MAX_MESSAGE = 64 * 1024
#: How long removing a server waits for it to exit (it does at once unless runs of it go on).
SERVER_EXIT_S = 2.0
#: Removals of retired servers whose runs went on, until they exit.
_AFTER_EXIT: set[asyncio.Future[None]] = set()


class Confinement(Protocol):
    """What a backend adds to a forked run of its own (bwrap: namespaces, folders, control
    groups, network), made before the run is forked and removed with it."""

    #: The request's folders and ``sandbox`` part (``crewyard_runtime/_confine.py``).
    request: dict[str, Any]

    async def place(self, keeper: int) -> None:
        """Before the run may start: its keeper (host pid) into control groups and network."""

    async def memory_used(self) -> int | None: ...

    def files_folder(self) -> Path:
        """Where the run writes its files until ``collect`` (its slot)."""
        ...

    async def processes(self) -> set[int] | None:
        """The run's processes (its control group's)."""
        ...

    def oom_killed(self) -> bool: ...

    async def collect(self) -> None:
        """After the run: what it wrote into ``spec.artifacts_dir``."""

    async def remove(self) -> None: ...


#: A run's confinement, for its spec.
Confine = Callable[[RunSpec], Awaitable[Confinement]]


def _pss(pid: int) -> int | None:
    """The process's proportional share of memory: pages it shares with the server count in part."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class _Control:
    """The runner's end of one run's control socket: messages in order, the first with the
    sender's credentials."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._queue: asyncio.Queue[tuple[dict[str, Any], int | None] | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        self._open = True

    def _readable(self) -> None:
        try:
            data, ancdata, _, _ = self._sock.recvmsg(_MAX_MESSAGE, socket.CMSG_SPACE(12))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, ancdata = b"", []
        if not data:
            self._stop()
            return
        pid = None
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(value) >= 12:
                pid = struct.unpack("iII", value[:12])[0]
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if isinstance(message, dict):
            self._queue.put_nowait((message, pid))

    def _stop(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._sock.fileno())
            self._queue.put_nowait(None)

    async def next(self) -> tuple[dict[str, Any], int | None] | None:
        return await self._queue.get()

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self._sock.send(json.dumps(message).encode())

    def close(self) -> None:
        self._stop()
        self._sock.close()


async def _reader(fd: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1 << 20)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader


async def _writer(fd: int) -> asyncio.StreamWriter:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_write_pipe(
        lambda: asyncio.streams.FlowControlMixin(), os.fdopen(fd, "wb", 0)
    )
    return asyncio.StreamWriter(transport, protocol, None, loop)


class ForkedHandle(NoLinger):
    """One run forked from a server."""

    def __init__(
        self,
        spec: RunSpec,
        keeper: int,
        control: _Control,
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        confinement: Confinement | None = None,
    ) -> None:
        self._spec = spec
        self._confinement = confinement
        self.keeper = keeper
        self._control = control
        self._stdin = StdinWriter(stdin)
        self._streams = {"proto": stdout, "stderr": stderr}
        self.pid: int | None = None
        self._exit: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._follow = asyncio.create_task(self._follow_control())
        #: Nothing is left out on the way: the runner checks the folder itself when it collects.
        self.skipped: Skipped = []

    async def _follow_control(self) -> None:
        status = ExitStatus(code=-signal.SIGKILL, signal=signal.SIGKILL)  # a keeper that vanished
        while (item := await self._control.next()) is not None:
            message, sender = item
            if message.get("t") == "running" and sender is not None:
                self.pid = sender  # the run's own pid, as the kernel gave it: never its word
            elif message.get("t") == "exit":  # the keeper exits next: its socket closes then
                code, sig = message.get("code"), message.get("signal")
                status = ExitStatus(
                    code=code if isinstance(code, int) else -(sig if isinstance(sig, int) else 9),
                    signal=sig if isinstance(sig, int) else None,
                )
        if self._confinement is not None and self._confinement.oom_killed():
            status = msgspec.structs.replace(status, oom_killed=True)
        if not self._exit.done():
            self._exit.set_result(status)

    @property
    def exited(self) -> bool:
        return self._exit.done()

    async def send(self, line: bytes) -> None:
        await self._stdin.send(line)

    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        return merge_lines(self._streams, self._spec.limits.max_output_bytes)

    async def wait(self) -> ExitStatus:
        return await asyncio.shield(self._exit)

    def _signal(self, sig: int) -> None:
        if self.exited:
            return  # its pids may be someone else's by now
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        if sig == signal.SIGKILL or self.pid is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.keeper, signal.SIGKILL)  # the run follows it (parent-death signal)

    async def kill(self, grace_s: float) -> None:
        if self.exited:
            return
        self._signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), grace_s)
        self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wait(), 10)

    async def memory_used(self) -> int | None:
        if self._confinement is not None:
            return await self._confinement.memory_used()
        return _pss(self.pid) if self.pid is not None and not self.exited else None

    async def files_folder(self) -> Path | None:
        if self._confinement is not None:
            return self._confinement.files_folder()
        return self._spec.artifacts_dir

    async def processes(self) -> set[int] | None:
        if self._confinement is not None:
            return await self._confinement.processes()
        return await asyncio.to_thread(cgroups.descendants, self.keeper)

    async def collect_artifacts(self) -> Path:
        """Unconfined, the run wrote straight into ``spec.artifacts_dir``: nothing to copy."""
        if self._confinement is not None:
            await self._confinement.collect()
        return self._spec.artifacts_dir

    async def remove(self) -> None:
        self._stdin.close()
        self._signal(signal.SIGKILL)
        self._control.close()
        self._follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._follow
        if self._confinement is not None:
            await self._confinement.remove()


class ForkServer:
    """A server's own handle (the backend's, for its output and memory) and its fork socket."""

    def __init__(self, handle: RunHandle, sock: socket.socket, confine: Confine | None = None) -> None:
        self._handle = handle
        self._sock = sock
        sock.setblocking(False)  # a server that stopped reading must never block the runner
        self._confine = confine
        self._lock = asyncio.Lock()
        self._forked = 0  # runs forked from it (while there are none, nothing of it is running)

    # The server is watched as a warm sandbox is (its output, its memory): RunHandle's methods.
    def output(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._handle.output()

    async def wait(self) -> ExitStatus:
        return await self._handle.wait()

    async def send(self, line: bytes) -> None:
        await self._handle.send(line)

    async def end_input(self) -> None:
        await self._handle.end_input()

    async def kill(self, grace_s: float) -> None:
        await self._handle.kill(grace_s)

    async def collect_artifacts(self) -> Path:
        """A server writes no artifacts: its own (empty) folder."""
        return await self._handle.collect_artifacts()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return []

    async def memory_used(self) -> int | None:
        return await self._handle.memory_used()

    async def files_folder(self) -> Path | None:
        return await self._handle.files_folder()

    async def processes(self) -> set[int] | None:
        return await self._handle.processes()

    async def remove(self) -> None:
        """Take no more requests: the server exits once the runs it forked have ended (at once
        when there are none, which this waits a moment for). One that never forked a run is
        killed: it may never read its socket again (an import that does not end)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if not self._forked:
            await self._handle.kill(0)
            await self._handle.remove()
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._handle.wait()), SERVER_EXIT_S)
        except TimeoutError:  # runs of it go on: it exits after them, and is removed then
            task = asyncio.ensure_future(self._remove_after_exit())
            _AFTER_EXIT.add(task)
            task.add_done_callback(_AFTER_EXIT.discard)
            return
        await self._handle.remove()  # its pipes (and a sandbox's groups and folders)

    async def _remove_after_exit(self) -> None:
        await self._handle.wait()
        await self._handle.remove()

    async def fork(self, spec: RunSpec) -> ForkedHandle:
        """A fresh process for ``spec``'s run (a warm one waits for ``start``; else it is sent)."""
        if self._sock.fileno() < 0:
            raise BackendError("the fork server is gone: it was retired")
        await asyncio.to_thread(_folders, spec)
        try:
            confinement = await self._confine(spec) if self._confine is not None else None
        except OSError as exc:
            raise BackendError(f"cannot prepare the run's sandbox: {exc}") from exc
        try:
            handle = await self._fork(spec, confinement)
        except BaseException:
            if confinement is not None:
                await confinement.remove()
            raise
        self._forked += 1
        if not spec.warm:
            handle._stdin.send_soon(encode(Start(run_id=spec.run_id, input=spec.input, thread=spec.thread)))
        return handle

    async def _fork(self, spec: RunSpec, confinement: Confinement | None) -> ForkedHandle:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ours, theirs = [in_w, out_r, err_r], [in_r, out_w, err_w]
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            here.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            here.setblocking(False)
            request: dict[str, Any] = {
                "t": "fork",
                "artifacts_dir": str(spec.artifacts_dir),
                "tmp_dir": str(spec.work_dir),
            }
            if confinement is not None:
                request.update(confinement.request)
            async with self._lock:
                socket.send_fds(self._sock, [json.dumps(request).encode()], [*theirs, there.fileno()])
        except OSError as exc:
            here.close()
            for fd in ours:
                os.close(fd)
            raise BackendError(f"the fork server is gone: {exc}") from exc
        finally:
            there.close()
            for fd in theirs:
                os.close(fd)
        control = _Control(here)
        try:
            first = await asyncio.wait_for(control.next(), FORK_TIMEOUT_S)
            if first is not None and first[0].get("t") == "failed":
                raise BackendError(
                    f"the fork server could not fork the run: {str(first[0].get('error'))[:500]}"
                )
            if first is None or first[0].get("t") != "forked" or first[1] is None:
                raise BackendError("the fork server did not fork the run")
            keeper = first[1]
            if confinement is not None:
                await confinement.place(keeper)
            control.send({"t": "go"})
            stdin = await _writer(ours.pop(0))
            stdout = await _reader(ours.pop(0))
            stderr = await _reader(ours.pop(0))
        except BaseException:
            control.close()
            for fd in ours:  # those not yet handed to the event loop
                os.close(fd)
            raise
        return ForkedHandle(spec, keeper, control, stdin, stdout, stderr, confinement)


def _folders(spec: RunSpec) -> None:
    spec.work_dir.mkdir(parents=True, exist_ok=True)
    spec.artifacts_dir.mkdir(parents=True, exist_ok=True)
