"""Fork servers of warm pools (a part of :class:`~.pools.Pools`, for backends that can fork).

Where the backend has ``start_server``, a pool first starts a fork server
(``backends/_forkserver.py``): a runtime that imported the crew and forks a fresh process per
request. The pool's sandboxes are forked from it, and so is a run that finds the pool empty
(:meth:`ForkServers.fork`). A server that cannot start, whose crew cannot be forked (its import
leaves threads) or that fails to fork is given up: the pool then starts its sandboxes one by one,
after the pool's failure pause.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

import msgspec

from .backends import BackendError, ExecutionBackend, RunHandle, RunSpec
from .backends._forkserver import ForkServer
from .warm import WarmSandbox
from .warm_pool import Placeholder, Pool, PoolKey

log = logging.getLogger("crewyard.runner")


def fork_server(sandbox: WarmSandbox) -> ForkServer:
    assert isinstance(sandbox.handle, ForkServer)
    return sandbox.handle


class _Host(Protocol):
    """What of :class:`~.pools.Pools` the servers use."""

    backend: ExecutionBackend
    work_dir: Path
    pools: dict[PoolKey, Pool]
    ready_timeout_s: float
    _warming: asyncio.Semaphore
    _wake: asyncio.Event

    @property
    def enabled(self) -> bool: ...
    def _spawn(self, work: Awaitable[None]) -> None: ...
    def _discard(self, sandbox: WarmSandbox) -> None: ...
    def _failed(self, pool: Pool, why: str) -> None: ...
    def _current(self, pool: Pool, fingerprint: str) -> bool: ...
    def _room_for(self, pool: Pool, need: int) -> bool: ...
    def _server_failed(self, pool: Pool, server: WarmSandbox, why: str) -> None: ...
    def _start_server(self, pool: Pool) -> None: ...
    async def _serve(self, pool: Pool, placeholder: Placeholder) -> None: ...
    async def _watch_server(self, pool: Pool, server: WarmSandbox) -> None: ...


class ForkServers:
    def can_fork(self: _Host, key: PoolKey, fingerprint: str) -> bool:
        """Whether a run with ``fingerprint`` can be forked from its pool's server right now."""
        pool = self.pools.get(key)
        return self.enabled and pool is not None and pool.serving(fingerprint) is not None

    async def fork(self: _Host, key: PoolKey, fingerprint: str, spec: RunSpec) -> RunHandle | None:
        """A run's process forked from its pool's server (None: there is none ready for it)."""
        pool = self.pools.get(key)
        server = pool.serving(fingerprint) if pool is not None and self.enabled else None
        if pool is None or server is None:
            return None
        try:
            return await fork_server(server).fork(spec)
        except BackendError as exc:
            log.warning("could not fork a run of %s (%s); it starts cold", key.deployment_id, exc)
            self._server_failed(pool, server, str(exc))
            return None

    def _server_failed(self: _Host, pool: Pool, server: WarmSandbox, why: str) -> None:
        """A server that could not fork is removed; the pool starts another after a pause."""
        if pool.server is server:
            pool.server = None
            self._discard(server)
            self._failed(pool, f"its fork server failed: {why}")

    def _forks(self: _Host, pool: Pool) -> bool:
        return pool.forking and callable(getattr(self.backend, "start_server", None))

    def _start_server(self: _Host, pool: Pool) -> None:
        name = f"server_{uuid.uuid4().hex[:16]}"
        work = self.work_dir / name
        spec = msgspec.structs.replace(
            pool.template, run_id=name, input={}, work_dir=work, artifacts_dir=work / "artifacts", warm=True
        )
        placeholder = pool.server = Placeholder(spec, pool.fingerprint)
        self._spawn(self._serve(pool, placeholder))

    async def _serve(self: _Host, pool: Pool, placeholder: Placeholder) -> None:
        """Start ``pool``'s fork server; its sandboxes (and cold runs) are forked from it."""
        server: WarmSandbox | None = None
        failure: str | None = None
        try:
            async with self._warming:
                if self._current(pool, placeholder.fingerprint) and pool.server is placeholder:
                    handle = await self.backend.start_server(placeholder.spec)  # type: ignore[attr-defined]
                    if handle is None:  # not this crew's runtime
                        pool.forking = False
                        return
                    server = pool.server = WarmSandbox(
                        placeholder.spec, handle, placeholder.fingerprint, serves=True
                    )
                    await server.until_ready(self.ready_timeout_s)
                    failure = server.failure
        except (BackendError, OSError) as exc:
            failure = str(exc)
        finally:
            if pool.server is placeholder:
                pool.server = None
        if failure is not None and (server is None or pool.server is server):
            # An import that leaves threads, or a server that cannot start (one removed while it
            # imported, by a retirement, did not fail: the pool forks once another is ready).
            pool.forking = False
            log.warning("no fork server for %s (%s): no forks", pool.key.deployment_id, failure)
        if server is None:
            return
        if failure is not None or pool.server is not server or not self._current(pool, server.fingerprint):
            if pool.server is server:
                pool.server = None
            self._discard(server)
            return
        used = await server.measure()
        if used is not None:
            pool.server_memory = max(pool.server_memory or 0, used)
        self._spawn(self._watch_server(pool, server))
        self._wake.set()

    async def _watch_server(self: _Host, pool: Pool, server: WarmSandbox) -> None:
        await server.ended()
        if pool.server is server:
            pool.server = None
            self._failed(pool, f"its fork server ended: {server.failure}")
            self._discard(server)
            self._wake.set()
