"""Pools of warm sandboxes: one per deployment version and environment that has run recently.

A run that finds a ready sandbox in its pool takes it (:meth:`Pools.take`) and the pool starts
another in the background; a run that finds none starts cold, as always, and offers its own
spec as the pool's template (:meth:`Pools.offer`). Each sandbox serves exactly one run.

**Fresh, always.** A pool's sandboxes were prepared with its *fingerprint*: everything that
decides what a run would see (version, environment variables, config, limits; see
``specs.py``). The runner computes a run's fingerprint from the stream when it picks the run
up — after its ``POST`` — and takes a sandbox only when the two are equal; otherwise the pool's
sandboxes are retired and the run starts cold. Runners also follow the stream and retire the
pools a change affects at once (:meth:`Pools.retire`), so that the pool is refilled with the new
values before the next run comes.

**Bounded.** Per pool: ``low`` ready sandboxes are kept (``warm = n`` in the crew's config, or the
platform's default), up to ``high`` while runs keep finding it empty; a pool whose deployment has
had no run for ``idle_s`` is emptied (scale to zero). Globally: the idle and warming sandboxes
and the fork servers hold at most ``budget`` bytes, measured from their control groups (a
sandbox not measured yet counts as what its pool's sandboxes were seen to hold, or its memory
limit; a server as its pool's last server): a new one starts only when it fits, if need be after
removing the least recently used pools' sandboxes and then their servers; one that grows is
caught at the next measurement. At most ``warming_at_once`` import a crew at a time, so
warm-ups never crowd out the runs themselves.

**Forked, where the backend can**: see ``pool_servers.py``.

One pool's own state (its key, template, sandboxes, server, target) is :class:`~.warm_pool.Pool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from crewyard import metrics

from .backends import BackendError, ExecutionBackend, RunHandle
from .pool_servers import ForkServers, fork_server
from .warm import WarmSandbox
from .warm_pool import Placeholder, Pool, PoolKey, Renewal

__all__ = ["Pool", "PoolKey", "Pools", "Renew", "Renewal"]

log = logging.getLogger("crewyard.runner")

MAINTAIN_EVERY_S = 2.0
READY_TIMEOUT_S = 300.0
#: A pool that found no sandbox keeps one more ready; it goes back down after this long without.
SHRINK_AFTER_S = 60.0
#: A pool refills this long after a run took one of its sandboxes, not at once: the first moments
#: of a run are the ones its caller waits for, and starting a sandbox then (a fork of the runner,
#: bwrap, the network, an interpreter importing a framework: seconds of CPU) would compete with
#: them. Measured with the CrewAI example on 2 busy cores: run.started → first crew event 0.2 s
#: with the refill at once, 0.1 s with it a second later. A pool whose fork server is ready
#: waits much less: its refill is a fork (tens of milliseconds), and runs that come one after
#: another would otherwise each find the pool empty and fork on their way to running; a tenth of
#: a second keeps it off a run's first moments (measured with the CrewAI example on bwrap:
#: run.started → first crew event 95 ms p50 with the refill at once, against 73 ms).
REFILL_AFTER_TAKE_S = 1.0
REFILL_FORKED_AFTER_TAKE_S = 0.1


Renew = Callable[[Pool], Awaitable[Renewal | None]]


class Pools(ForkServers):
    def __init__(
        self,
        backend: ExecutionBackend,
        *,
        work_dir: Path,
        budget: int,
        idle_s: float,
        renew: Renew | None = None,
        warming_at_once: int = 2,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.backend = backend
        self.work_dir = work_dir
        self.budget = budget
        self.idle_s = idle_s
        self.renew = renew
        self.ready_timeout_s = ready_timeout_s
        self.pools: dict[PoolKey, Pool] = {}
        self._warming = asyncio.Semaphore(warming_at_once)
        self._tasks: set[asyncio.Task[None]] = set()
        self._removals: set[asyncio.Task[None]] = set()
        self._renewing: set[PoolKey] = set()
        self._published: set[str] = set()
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.budget > 0 and not self._closed

    # -- what the runner asks ----------------------------------------------------------------

    def take(self, key: PoolKey, fingerprint: str) -> WarmSandbox | None:
        """A ready sandbox prepared exactly as a run with ``fingerprint`` would be, or None."""
        pool = self.pools.get(key)
        if pool is None or not self.enabled:
            return None
        pool.last_used = time.monotonic()
        self._wake.set()
        if pool.fingerprint != fingerprint:
            self._retire(pool, "what its runs see changed")
            return None
        while pool.idle:
            sandbox = pool.idle.pop(0)
            if sandbox.usable:
                self._refill_later(pool)
                return sandbox
            self._discard(sandbox)
        pool.target = min(pool.target + 1, pool.high)
        pool.last_miss = time.monotonic()
        return None

    def _refill_later(self, pool: Pool) -> None:
        now = time.monotonic()
        if pool.refill_at > now:
            return  # already waiting: runs coming faster than the delay must not put it off for good
        forked = pool.serving(pool.fingerprint) is not None
        delay = REFILL_FORKED_AFTER_TAKE_S if forked else REFILL_AFTER_TAKE_S
        pool.refill_at = now + delay
        with contextlib.suppress(RuntimeError):  # no running loop: the next pass refills
            asyncio.get_running_loop().call_later(delay, self._wake.set)

    def give_back(self, key: PoolKey, sandbox: WarmSandbox) -> None:
        """A sandbox taken for a run that did not start after all (it was canceled meanwhile)."""
        pool = self.pools.get(key)
        if pool is not None and pool.fingerprint == sandbox.fingerprint and sandbox.usable and self.enabled:
            pool.idle.insert(0, sandbox)
        else:
            self._discard(sandbox)

    def offer(self, renewal: Renewal, *, project: str, name: str, low: int, high: int) -> None:
        """A run of ``renewal.key`` started: keep sandboxes like its own ready from now on."""
        if not self.enabled:
            return
        pool = self.pools.get(renewal.key)
        if low <= 0:
            if pool is not None:
                self._drop(pool)
            return
        if pool is None:
            pool = self.pools[renewal.key] = Pool(renewal, project=project, name=name, low=low, high=high)
        elif pool.stale or pool.fingerprint != renewal.fingerprint:
            self._retire(pool, "what its runs see changed")
            _, pool.template, pool.fingerprint = renewal
            pool.stale, pool.moving_to = False, None
        pool.low, pool.high = low, max(low, high)
        pool.target = max(pool.target, low)
        pool.last_used = time.monotonic()
        self._wake.set()

    def retire(self, project: str, why: str) -> int:
        """Remove the sandboxes of every pool of ``project`` (something its runs see changed);
        the pools renew their template from the stream and refill. Returns how many pools."""
        pools = [p for p in self.pools.values() if p.project == project]
        for pool in pools:
            self._retire(pool, why)
        self._wake.set()
        return len(pools)

    def move(self, project: str, name: str, environment: str, deployment_id: str) -> int:
        """``environment`` of deployment ``name`` runs ``deployment_id`` from now on: pools of its
        previous version there follow it (their sandboxes are retired, new ones prepared)."""
        moved = 0
        for pool in list(self.pools.values()):
            if (pool.project, pool.name, pool.key.environment) != (project, name, environment):
                continue
            if pool.key.deployment_id != deployment_id:
                pool.moving_to = PoolKey(deployment_id, environment)
                self._retire(pool, f"{environment} runs {deployment_id} now")
                moved += 1
        self._wake.set()
        return moved

    def held(self) -> int:
        return sum(p.held() for p in self.pools.values())

    def snapshot(self) -> dict[str, dict[str, int | None]]:
        """Per pool: idle and warming sandboxes, target, measured memory (for metrics and tests)."""
        return {
            f"{k.deployment_id}/{k.environment}": {
                "idle": len(p.idle),
                "warming": len(p.warming),
                "target": p.target,
                "memory": _measured(p),
            }
            for k, p in self.pools.items()
        }

    # -- keeping them --------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Until cancelled: refill, measure, evict, empty idle pools."""
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MAINTAIN_EVERY_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._measure()
                self._tidy(time.monotonic())
                self._fit()
                self._refill()
            except Exception:  # one bad pass must not end warm sandboxes for good
                log.exception("warm sandboxes: maintenance failed")
            self._publish()

    def _tidy(self, now: float) -> None:
        for pool in list(self.pools.values()):
            if now - pool.last_used > self.idle_s:
                log.info("warm sandboxes of %s: no run for %gs, emptied", pool.key.deployment_id, self.idle_s)
                self._drop(pool)
                continue
            for sandbox in [s for s in pool.idle if not s.usable]:
                pool.idle.remove(sandbox)
                self._discard(sandbox)
            if pool.target > pool.low and now - pool.last_miss > SHRINK_AFTER_S:
                pool.target -= 1
                pool.last_miss = now
            while len(pool.idle) > pool.target:
                self._discard(pool.idle.pop())
            if pool.stale and self.renew is not None and pool.key not in self._renewing:
                self._spawn(self._renew(pool))

    async def _measure(self) -> None:
        for pool in self.pools.values():
            if isinstance(pool.server, WarmSandbox):
                used = await pool.server.measure()
                if used is not None:
                    pool.server_memory = max(pool.server_memory or 0, used)
            for sandbox in pool.idle:
                used = await sandbox.measure()
                if used is not None:
                    pool.memory = max(pool.memory or 0, used)

    def _fit(self) -> None:
        """Evict the least recently used pools' sandboxes, then their fork servers, while the
        measured total is over the budget."""
        for pool in sorted(self.pools.values(), key=lambda p: p.last_used):
            self._shed(pool, 0)

    def _shed(self, pool: Pool, need: int) -> None:
        """Remove ``pool``'s idle sandboxes, then its fork server, until ``need`` more bytes fit
        in the budget (or it has nothing left to remove). A server's runs go on: it exits once
        they have ended; the pool starts another only when one fits again. A server still
        importing is left to finish (as a placeholder is); it is counted all the same."""
        while self.held() + need > self.budget and pool.idle:
            self._discard(pool.idle.pop())
        if self.held() + need > self.budget and (server := pool.evictable_server()) is not None:
            log.info(
                "fork server of %s removed: over the warm sandboxes' memory budget", pool.key.deployment_id
            )
            self._discard(server)
            pool.server = None

    def _refill(self) -> None:
        now = time.monotonic()
        for pool in sorted(self.pools.values(), key=lambda p: p.last_used, reverse=True):
            if pool.stale or now < max(pool.retry_at, pool.refill_at):
                continue
            if self._forks(pool) and pool.serving(pool.fingerprint) is None:
                if pool.server is None and self._room_for(pool, pool.server_estimate()):
                    self._start_server(pool)
                continue  # its sandboxes are forked once the server is ready
            while len(pool.idle) + len(pool.warming) < pool.target and self._room_for(pool, pool.estimate()):
                self._start_one(pool)

    def _room_for(self, pool: Pool, need: int) -> bool:
        """Whether ``need`` more bytes of ``pool`` fit, evicting the sandboxes and fork servers
        of pools used less recently if that helps."""
        older = sorted(
            (p for p in self.pools.values() if p.last_used < pool.last_used), key=lambda p: p.last_used
        )
        if self.held() - sum(p.evictable() for p in older) + need > self.budget:
            return False  # evicting them would not make room: they stay
        for other in older:
            self._shed(other, need)
        return self.held() + need <= self.budget

    def _start_one(self, pool: Pool) -> None:
        name = f"warm_{uuid.uuid4().hex[:16]}"
        work = self.work_dir / name
        spec = msgspec.structs.replace(
            pool.template, run_id=name, input={}, work_dir=work, artifacts_dir=work / "artifacts", warm=True
        )
        placeholder = Placeholder(spec, pool.fingerprint)
        pool.warming.add(placeholder)  # counted against the budget from now on
        self._spawn(self._warm_up(pool, placeholder))

    async def _warm_up(self, pool: Pool, placeholder: Placeholder) -> None:
        sandbox: WarmSandbox | None = None
        try:
            async with self._warming:
                if self._current(pool, placeholder.fingerprint):
                    server = pool.serving(placeholder.fingerprint)
                    if server is not None:
                        try:
                            handle: RunHandle = await fork_server(server).fork(placeholder.spec)
                        except BackendError as exc:
                            if pool.server is not server:
                                return  # evicted or retired meanwhile: no failure of the pool
                            self._server_failed(pool, server, str(exc))
                            raise
                    else:
                        handle = await self.backend.start(placeholder.spec)
                    sandbox = WarmSandbox(placeholder.spec, handle, placeholder.fingerprint)
                    pool.warming.discard(placeholder)
                    pool.warming.add(sandbox)
                    await sandbox.until_ready(self.ready_timeout_s)
        except (BackendError, OSError) as exc:
            self._failed(pool, f"could not start: {exc}")
        finally:
            pool.warming.discard(placeholder)
            if sandbox is not None:
                pool.warming.discard(sandbox)
        if sandbox is None:
            return
        if sandbox.failure is not None or not self._current(pool, sandbox.fingerprint):
            if sandbox.failure is not None:
                self._failed(pool, sandbox.failure)
            self._discard(sandbox)
            return
        pool.failures = 0
        try:
            used = await sandbox.measure()
        except asyncio.CancelledError:  # closing: the sandbox is in no list close() removes
            self._discard(sandbox)
            raise
        if used is not None:
            pool.memory = max(pool.memory or 0, used)
        if not self._current(pool, sandbox.fingerprint):  # dropped or retired while measured
            self._discard(sandbox)
            return
        pool.idle.append(sandbox)
        self._spawn(self._watch(pool, sandbox))
        self._wake.set()

    def _current(self, pool: Pool, fingerprint: str) -> bool:
        return not self._closed and self.pools.get(pool.key) is pool and pool.fingerprint == fingerprint

    async def _watch(self, pool: Pool, sandbox: WarmSandbox) -> None:
        """Remove an idle sandbox that ends on its own (a crash, the kernel's OOM killer)."""
        await sandbox.ended()
        if sandbox in pool.idle:
            pool.idle.remove(sandbox)
            log.warning("a warm sandbox of %s ended while idle: %s", pool.key.deployment_id, sandbox.failure)
            self._discard(sandbox)
            self._wake.set()

    def _failed(self, pool: Pool, why: str) -> None:
        pool.failures += 1
        pool.retry_at = time.monotonic() + min(300.0, 5.0 * 2 ** (pool.failures - 1))
        log.warning(
            "a warm sandbox of %s failed (%s); runs start cold meanwhile", pool.key.deployment_id, why
        )

    async def _renew(self, pool: Pool) -> None:
        assert self.renew is not None
        self._renewing.add(pool.key)
        try:
            renewal = await self.renew(pool)
        except Exception as exc:
            log.warning("warm sandboxes of %s: cannot renew (%s)", pool.key.deployment_id, exc)
            renewal = None
        finally:
            self._renewing.discard(pool.key)
        if self.pools.get(pool.key) is not pool or not pool.stale:
            return  # a run offered a template meanwhile, or the pool is gone
        if renewal is None:
            self._drop(pool)
            return
        del self.pools[pool.key]
        existing = self.pools.get(renewal.key)
        if existing is not None:  # the environment moved to a version that has its own pool
            existing.last_used = max(existing.last_used, pool.last_used)
            return
        pool.key, pool.template, pool.fingerprint = renewal
        pool.stale, pool.moving_to = False, None
        self.pools[pool.key] = pool
        self._wake.set()

    # -- removing ------------------------------------------------------------------------------

    def _retire(self, pool: Pool, why: str) -> None:
        if pool.idle:
            log.info("warm sandboxes of %s retired: %s", pool.key.deployment_id, why)
        for sandbox in pool.idle:
            self._discard(sandbox)
        pool.idle.clear()
        if isinstance(pool.server, WarmSandbox):  # its runs go on; it exits when they end
            self._discard(pool.server)
        pool.server = None
        pool.stale = True
        pool.fingerprint = ""  # what is warming up now is not current either

    def _drop(self, pool: Pool) -> None:
        self._retire(pool, "dropped")
        if self.pools.get(pool.key) is pool:
            del self.pools[pool.key]

    def _discard(self, sandbox: WarmSandbox) -> None:
        # Kept apart from the other tasks: a removal is never cancelled halfway, also not by close()
        # (which cancels those tasks and then waits for the removals). A task removes through this,
        # never by awaiting ``remove()`` itself: cancelled in the middle, the sandbox's process was
        # killed but never waited for.
        task = asyncio.ensure_future(sandbox.remove())
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self) -> None:
        shown = {p.key.deployment_id: p for p in self.pools.values()}
        for gone in self._published - shown.keys():
            for state in ("idle", "warming"):
                with contextlib.suppress(KeyError):
                    metrics.WARM_SANDBOXES.remove(gone, state)
        for deployment, pool in shown.items():
            metrics.WARM_SANDBOXES.labels(deployment, "idle").set(len(pool.idle))
            metrics.WARM_SANDBOXES.labels(deployment, "warming").set(len(pool.warming))
        self._published = set(shown)
        metrics.WARM_MEMORY.set(sum(_measured(p) for p in self.pools.values()))

    async def close(self) -> None:
        """Remove every sandbox (idle or warming up) and stop: the runner is stopping."""
        self._closed = True
        sandboxes = [s for p in self.pools.values() for s in (*p.idle, *p.warming, p.server) if s is not None]
        self.pools.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(s.remove() for s in sandboxes if isinstance(s, WarmSandbox)),
            *self._removals,
            return_exceptions=True,
        )
        self._publish()


def _measured(pool: Pool) -> int:
    """What ``pool``'s idle sandboxes and its fork server were last measured to hold."""
    held = [*pool.idle, *([pool.server] if isinstance(pool.server, WarmSandbox) else [])]
    return sum(s.memory or 0 for s in held)
