"""The base images builds start from: each one's id (pulled when the engine lacks it) and the
version of Python or Node it has, asked once per image id by running it, and kept on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors
import requests

from crewyard.environments import BuildFailed, LogSink

from ._engine import ENGINE_ERRORS, BuildBackendUnavailable, call

_PROBES = {
    "python3": ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
    "node": ["node", "--version"],
}

#: The engine's words when it lost the container's init process while starting it (runc's, or
#: netavark's when the process was gone before its network was set up): a transient on a busy
#: machine (the same start succeeds a moment later), not a broken image.
START_LOST = ("can't get final child's PID", "netavark: setns")
_PROBE_ATTEMPTS = 3
_LOGS_WAIT_S = 30.0
#: How long a probe (``python3 --version``) may take to exit. The engine's wait has no deadline of
#: its own: a container the engine lost track of would hold the build (and every build queued
#: behind it) for good. One that takes longer is started again, like a lost start.
_PROBE_EXIT_S = 120.0


class _StartLost(Exception):
    pass


def default_base_image(python: str | None) -> str:
    return f"python:{python or f'{sys.version_info.major}.{sys.version_info.minor}'}-slim"


class BaseImages:
    def __init__(self, api: Callable[[], docker.APIClient], cache_dir: Path) -> None:
        self._api = api
        self.cache_dir = cache_dir
        self._versions: dict[str, str] = {}

    async def image_id(self, base: str, log: LogSink) -> str:
        api = await asyncio.to_thread(self._api)
        try:
            info = await asyncio.to_thread(api.inspect_image, base)
        except docker.errors.ImageNotFound:
            await log(f"pulling base image {base}", "stdout")
            try:
                await asyncio.to_thread(api.pull, base)
                info = await asyncio.to_thread(api.inspect_image, base)
            except docker.errors.APIError as exc:
                reason = exc.explanation or exc
                raise BuildFailed(
                    f"base image {base!r} is not on this engine and cannot be pulled: {reason}"
                ) from None
        except ENGINE_ERRORS as exc:
            raise BuildBackendUnavailable(f"the container engine does not answer: {exc}") from exc
        return str(info["Id"])

    async def version(self, base: str, base_id: str, tool: str) -> str:
        """The version of ``tool`` (python3: ``major.minor``; node: ``x.y.z``) in the base image,
        asked once per image id (kept on disk)."""
        key = f"{tool}-{base_id.replace(':', '-')}"
        if key in self._versions:
            return self._versions[key]
        memo = self.cache_dir / "docker" / key
        if memo.is_file():
            version = memo.read_text().strip()
        else:
            version = await self._probe(base, base_id, _PROBES[tool])
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.write_text(version + "\n")
        self._versions[key] = version
        return version

    async def _probe(self, base: str, base_id: str, cmd: list[str]) -> str:
        """``_probe_once``, again after runc lost its own child while starting the container (a
        transient of the engine on a busy machine, unrelated to the image)."""
        for attempt in range(_PROBE_ATTEMPTS):
            try:
                return await self._probe_once(base, base_id, cmd)
            except _StartLost as exc:
                if attempt == _PROBE_ATTEMPTS - 1:
                    raise BuildFailed(f"base image {base!r} cannot run {cmd[0]}: {exc}") from None
                await asyncio.sleep(1 + attempt)
        raise AssertionError("unreachable")

    async def _probe_once(self, base: str, base_id: str, cmd: list[str]) -> str:
        api = await asyncio.to_thread(self._api)
        # No network at all: Podman ignores ``network_disabled`` and would set up a bridge for it.
        none = api.create_host_config(network_mode="none")
        created = await call("probe base image", api.create_container, base_id, cmd, host_config=none)
        try:
            try:
                await asyncio.to_thread(api.start, created["Id"])
            except docker.errors.APIError as exc:  # e.g. "python3": executable file not found
                if any(words in str(exc.explanation or exc) for words in START_LOST):
                    raise _StartLost(str(exc.explanation or exc)) from None
                raise BuildFailed(
                    f"base image {base!r} cannot run {cmd[0]}: {exc.explanation or exc}"
                ) from None
            try:
                result = await asyncio.to_thread(api.wait, created["Id"], timeout=_PROBE_EXIT_S)
            except requests.exceptions.RequestException as exc:
                raise _StartLost(f"it did not exit within {_PROBE_EXIT_S:g} s ({exc})") from None
            except ENGINE_ERRORS as exc:
                raise BuildBackendUnavailable(f"probe base image: {exc}") from exc
            # Podman may answer the logs of a just-exited container empty at first (its monitor
            # writes them out a moment later: far later on a busy machine).
            deadline = time.monotonic() + _LOGS_WAIT_S
            while True:
                out: bytes = await call("probe base image", api.logs, created["Id"], stdout=True, stderr=True)
                if out.strip() or result.get("StatusCode") != 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
        finally:
            with contextlib.suppress(*ENGINE_ERRORS):
                await asyncio.to_thread(api.remove_container, created["Id"], force=True)
        version = out.decode(errors="replace").strip().removeprefix("v")
        if result.get("StatusCode") != 0 or not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
            raise BuildFailed(f"base image {base!r} has no working {cmd[0]}: {version[-300:]}")
        return version
