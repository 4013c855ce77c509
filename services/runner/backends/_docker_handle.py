"""One run's container, once started: its output read by a thread of its own, protocol lines
written to its stdin on the attach connection, its exit, cancel (SIGTERM, grace, SIGKILL), its
memory, its artifacts (read where the engine keeps them, or copied out and checked) and its
removal. :mod:`.docker` makes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import ssl
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import docker.errors
import requests.exceptions
from docker.utils.socket import frames_iter

from crewyard import cgroups, privatenet
from crewyard.lines import splitters

from ._artifacts import Skipped, extract_tar_stream
from ._base import (
    ARTIFACTS_IN_CONTAINER,
    BackendError,
    BackendUnavailable,
    ExitStatus,
    RunSpec,
)
from ._engine import ENGINE_ERRORS, ContainerGone, in_thread, translate_errors

if TYPE_CHECKING:
    from .docker import DockerBackend


#: ``State.Status`` of a container whose process has ended (Podman's compat API says "stopped").
_ENDED = ("exited", "stopped", "dead")


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class DockerHandle:
    def __init__(
        self,
        backend: DockerBackend,
        spec: RunSpec,
        container_id: str,
        volume: str,
        stream: Any,
        network: privatenet.PrivateNetwork | None,
    ):
        self._api = backend.api()
        self._caps = backend.artifact_caps
        self._local = backend.volumes_here
        self._spec = spec
        self.container_id = container_id
        self.volume = volume
        self._stream = stream
        self._network = network
        self._write_lock = threading.Lock()
        self._input_ended = False
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=256)
        self._closed = threading.Event()
        self._exit: asyncio.Future[int] | None = None
        self._output_ended = asyncio.Event()  # the attach stream ended: the crew closed its output
        self._exited_state: dict[str, Any] | None = None  # ``State`` as inspect showed the exit
        self._pid = 0  # the container's first process, once seen (it is the same until it ends)
        self._status: ExitStatus | None = None
        self._kill_sent = False
        #: Artifacts that were not collected, with the reason (symlinks, too large …).
        self.skipped: Skipped = []
        threading.Thread(target=self._pump, name=f"crewyard-out-{spec.run_id}", daemon=True).start()

    # -- output: a thread reads the engine's multiplexed stream and hands chunks to the loop --

    def _put(self, item: tuple[str, bytes] | None) -> None:
        try:
            fut = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        except RuntimeError:
            return  # the loop is gone
        while True:  # block while the queue is full (backpressure), unless the run is removed
            try:
                fut.result(timeout=0.5)
                return
            except concurrent.futures.TimeoutError:
                if self._closed.is_set():
                    fut.cancel()
                    return
            except concurrent.futures.CancelledError:
                return

    def _pump(self) -> None:
        try:
            for kind, data in frames_iter(self._stream, tty=False):
                if data:
                    self._put(("proto" if kind == 1 else "stderr", data))
        except Exception as exc:  # a broken stream must still end output()
            if not self._closed.is_set():
                self._put(("stderr", f"\ncrewyard: the engine's output stream broke: {exc}".encode()))
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(self._output_ended.set)
            self._put(None)

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        cutters = splitters(self._spec.limits.max_output_bytes)
        while (item := await self._queue.get()) is not None:
            name, chunk = item
            for line in cutters[name].feed(chunk):
                yield line
        for cutter in cutters.values():
            for line in cutter.finish():
                yield line

    # -- the runtime's stdin: the attach connection's other direction --

    def _send_blocking(self, line: bytes) -> None:
        with self._write_lock, contextlib.suppress(OSError):
            if not self._input_ended:
                getattr(self._stream, "_sock", self._stream).sendall(line)

    def _end_input_blocking(self) -> None:
        with self._write_lock, contextlib.suppress(OSError):
            if not self._input_ended:
                self._input_ended = True
                sock = getattr(self._stream, "_sock", self._stream)
                # A TLS connection (an engine elsewhere) has no half-close: shutting its socket
                # down ends its encryption for the output still to be read. Its runtime ends at
                # its linger's bound instead (nothing is written after this all the same).
                if not isinstance(sock, ssl.SSLSocket):
                    sock.shutdown(socket.SHUT_WR)

    async def end_input(self) -> None:
        """The runtime lingers after its last line until its stdin ends (``opening(linger=True)``):
        a write that met the container's end would fail, and Podman reports that failure as a
        stderr frame on this attach — a line of the crew's output, at times cutting what the
        crew wrote last. So the runner ends the input, and writes nothing after."""
        await in_thread(self._end_input_blocking, f"crewyard-in-{self._spec.run_id}")

    async def send(self, line: bytes) -> None:
        if not self._closed.is_set():
            await in_thread(lambda: self._send_blocking(line), f"crewyard-in-{self._spec.run_id}")

    def send_soon(self, line: bytes) -> None:
        """Send from a thread of its own: the runtime reads its stdin only when it is ready."""
        in_thread(lambda: self._send_blocking(line), f"crewyard-in-{self._spec.run_id}")

    # -- lifecycle --

    def _wait_blocking(self) -> int:
        with translate_errors(f"wait for run {self._spec.run_id}"):
            while True:
                try:
                    return int(self._api.wait(self.container_id)["StatusCode"])
                except requests.exceptions.ReadTimeout:  # defensive: some proxies cut idle requests
                    continue
                except docker.errors.NotFound:
                    raise ContainerGone(f"run {self._spec.run_id}: its container was removed") from None

    def _state(self) -> dict[str, Any] | None:
        """The container's ``State`` as ``inspect`` shows it; None when the engine cannot tell."""
        try:
            return dict(self._api.inspect_container(self.container_id).get("State") or {})
        except ENGINE_ERRORS:
            return None

    async def _exit_seen_by_inspect(self) -> int | None:
        """The exit code as ``inspect`` shows it once the output stream ended; None if the
        engine cannot tell. The crew may close its output and go on: the polls then back off."""
        await self._output_ended.wait()
        pause = 0.01
        while (state := await asyncio.to_thread(self._state)) is not None:
            if state.get("Status") in _ENDED and isinstance(state.get("ExitCode"), int):
                self._exited_state = state
                return int(state["ExitCode"])
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
        return None

    async def _exit_code(self) -> int:
        """The container's exit code, from whichever tells first: the engine's ``wait`` or
        ``inspect`` once the output stream ended. Podman's ``wait`` (compat and libpod, whatever
        its poll interval) reports an exit 0.3-1.4 s after ``inspect`` shows it, measured."""
        waiting = in_thread(self._wait_blocking, f"crewyard-wait-{self._spec.run_id}")
        waiting.add_done_callback(_retrieved)  # it may end after the run's removal, unread
        polling = asyncio.ensure_future(self._exit_seen_by_inspect())
        try:
            either: set[asyncio.Future[Any]] = {waiting, polling}
            done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if polling in done and (code := polling.result()) is not None:
                return code
            return await waiting
        finally:
            polling.cancel()

    def _exited(self) -> asyncio.Future[int]:
        if self._exit is None:
            self._exit = asyncio.ensure_future(self._exit_code())
            # A wait that was cancelled (the run ended otherwise) leaves it unread: a container
            # removed meanwhile failed it, and its "never retrieved" log, run by the collector at
            # any point, broke a parse under way in another test (CPython 3.11's AST check).
            self._exit.add_done_callback(_retrieved)
        return self._exit

    async def wait(self) -> ExitStatus:
        if self._status is None:
            code = await asyncio.shield(self._exited())
            state = self._exited_state
            if state is None:
                with translate_errors(f"inspect run {self._spec.run_id}"):
                    info = await asyncio.to_thread(self._api.inspect_container, self.container_id)
                state = info.get("State") or {}
            oom = bool(state.get("OOMKilled"))
            if not oom and code == 137 and not self._kill_sent and self._spec.limits.memory_bytes:
                # Podman 4.3 on cgroup v1 never sets OOMKilled (measured: the kernel's memcg OOM
                # kill is not seen by conmon). Inside the container nothing but the kernel (or the
                # crew on itself) sends SIGKILL to the crew; we did not, so it ran out of memory.
                oom = True
            self._status = ExitStatus(code=code, oom_killed=oom, signal=code - 128 if code > 128 else None)
        return self._status

    def _signal(self, sig: str) -> None:
        try:
            self._api.kill(self.container_id, signal=sig)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409, 500):  # gone / not running: nothing to signal
                raise BackendError(f"signal run {self._spec.run_id}: {exc.explanation or exc}") from exc
        except ENGINE_ERRORS as exc:
            raise BackendUnavailable(f"signal run {self._spec.run_id}: {exc}") from exc

    async def kill(self, grace_s: float) -> None:
        self._kill_sent = True
        exited = self._exited()
        if not exited.done():
            await asyncio.to_thread(self._signal, "SIGTERM")  # the init passes it on to the crew
            with contextlib.suppress(asyncio.TimeoutError, ContainerGone):
                await asyncio.wait_for(asyncio.shield(exited), grace_s)
        if not exited.done():
            await asyncio.to_thread(self._signal, "SIGKILL")
            try:
                await asyncio.wait_for(asyncio.shield(exited), 30)
            except ContainerGone:
                pass  # removed meanwhile (e.g. by cleanup_orphans): as dead as it gets
            except TimeoutError:
                raise BackendError(f"run {self._spec.run_id} did not stop after SIGKILL") from None

    def _memory_blocking(self) -> int | None:
        state = self._state()
        if state is None:
            return None
        pid = int(state.get("Pid") or 0)
        # The engine's control group of the container, when the engine runs on this machine.
        return cgroups.memory_of_process(pid) if pid > 0 else None

    async def memory_used(self) -> int | None:
        return await asyncio.to_thread(self._memory_blocking)

    def _collect_blocking(self) -> Skipped:
        max_file, max_total = self._caps
        with translate_errors(f"copy artifacts of run {self._spec.run_id}"):
            chunks, stat = self._api.get_archive(self.container_id, f"{ARTIFACTS_IN_CONTAINER}/.", 1 << 20)
            # Engines differ in whether members are named "x" or "artifacts/x".
            strip = str(stat.get("name") or "").strip("/")
            try:
                return extract_tar_stream(
                    chunks,
                    self._spec.artifacts_dir,
                    max_file=max_file,
                    max_total=max_total,
                    strip="" if strip in ("", ".") else strip,
                )
            except OSError as exc:
                raise BackendError(f"artifacts of run {self._spec.run_id} are unreadable: {exc}") from exc

    def _volume_here(self) -> Path | None:
        """The run's volume as a folder of this host, when the engine keeps it here and this
        runner may read all of it (root); None otherwise, and on any doubt.

        ``get_archive`` costs Podman 250-700 ms even for an empty volume (it mounts the
        container's storage); reading the folder where it is costs a listing. The path comes from
        the engine; it is taken only if it names this run's volume (a random name per run) and is
        a real folder here — an engine on another machine, or in a VM behind a local socket,
        keeps its volumes where this host has no such folder. The crew cannot have replaced the
        folder itself (it was its mount point), and the runner's collector reads what is inside
        following no link."""
        if not self._local:
            return None
        try:
            mountpoint = str(self._api.inspect_volume(self.volume).get("Mountpoint") or "")
        except ENGINE_ERRORS:
            return None
        folder = Path(mountpoint)
        if not folder.is_absolute() or self.volume not in folder.parts:
            return None
        try:
            st = os.lstat(folder)
        except OSError:
            return None
        return folder if stat.S_ISDIR(st.st_mode) else None

    async def files_folder(self) -> Path | None:
        """The run's volume, when the engine keeps it on this host (see :meth:`_volume_here`)."""
        return await asyncio.to_thread(self._volume_here)

    def _processes_blocking(self) -> set[int] | None:
        if not self._pid and self._local:  # asked of the engine until it has one, then kept
            self._pid = int((self._state() or {}).get("Pid") or 0)
        # The engine's control group of the container, when the engine runs on this machine (a
        # pid kept past the container's end, then another process's, is in no group named so).
        return cgroups.processes_of_group_of(self._pid, self.container_id) if self._pid > 0 else None

    async def processes(self) -> set[int] | None:
        return await asyncio.to_thread(self._processes_blocking)

    async def collect_artifacts(self) -> Path:
        """The volume's folder where the engine keeps it, when that is on this host (see
        :meth:`_volume_here`); otherwise its archive, unpacked into ``spec.artifacts_dir``."""
        folder = await asyncio.to_thread(self._volume_here)
        if folder is not None:
            return folder
        self.skipped = await asyncio.to_thread(self._collect_blocking)
        return self._spec.artifacts_dir

    def _remove_blocking(self) -> None:
        with contextlib.suppress(Exception):  # unblocks the output thread if it still reads
            self._stream.close()
        with translate_errors(f"remove run {self._spec.run_id}"):
            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_container(self.container_id, force=True, v=True)
            with contextlib.suppress(docker.errors.NotFound):
                self._api.remove_volume(self.volume, force=True)

    async def remove(self) -> None:
        self._closed.set()
        await asyncio.to_thread(self._remove_blocking)
        if self._network is not None:
            await asyncio.to_thread(self._network.close)
            self._network = None
