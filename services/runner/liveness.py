"""Run ownership that survives a broker outage: leases in a JetStream key-value bucket.

A redelivered run message does not prove its runner is dead: the broker may have restarted or
lost quorum, taking the runner's heartbeats with it. Each runner keeps one entry,
``{"runs": {run_id: attempt}}``, in the ``CREWYARD_RUNNER_LEASES`` bucket: written before it
appends ``run.started`` (so an entry read afterwards that does not list the attempt means the
runner let it go — or died and came back with the same id) and renewed every ``lease/12``.

Whether an owner has gone silent is judged without clocks, by revisions of the bucket (one
stream, one order): the judge counts its *own* renewals that landed after the owner's latest
entry. Its renewals are at least ``interval`` apart, so 13 of them span a whole lease of time in
which the broker took writes and the owner wrote nothing. While the broker is down nobody's
renewals land, so an outage never counts against anyone: once it returns the owner renews
within an interval and keeps its runs.

The owner's half: a runner that has not renewed for ``lease - interval`` stops its attempts
(the runner fences them) before anyone can conclude it is gone, and it claims no new work while
its lease is not fresh. See ``README.md`` for the whole argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Sequence

import msgspec
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.eventstore import EventStore, StoreUnavailable

log = logging.getLogger("crewyard.runner")
BUCKET = "CREWYARD_RUNNER_LEASES"
#: Renewals per lease; a silent owner's runs are taken over after RENEWALS + 1 of the judge's own.
RENEWALS = 12


class LeaseEntry(msgspec.Struct, frozen=True):
    """An owner's latest entry: its bucket revision and the attempts it holds."""

    revision: int
    runs: dict[str, int]


def still_held(
    entry: LeaseEntry | None, run_id: str, attempt: int, own_renewals: Sequence[int], needed: int
) -> bool:
    """Whether ``attempt`` of ``run_id`` must be left to its owner (the decision, without I/O).

    ``entry`` is the owner's latest entry (None: deleted at a clean stop, or never written);
    ``own_renewals`` are the revisions of the judge's own renewals, each landed at least one
    renewal interval after the one before, all taken before ``entry`` was read.
    """
    if entry is None or entry.runs.get(run_id) != attempt:
        return False  # the owner wrote a later entry without it: it let the attempt go
    silent_for = sum(1 for revision in own_renewals if revision > entry.revision)
    return silent_for < needed


class Liveness:
    def __init__(self, store: EventStore, runner_id: str, lease_s: float, bucket: str = BUCKET) -> None:
        self.store = store
        self.runner_id = runner_id
        self.lease_s = lease_s
        self.interval_s = lease_s / RENEWALS
        #: Stop our attempts after this long without a renewal: one interval before anyone may
        #: take them over, so that a killed crew is dead before its run starts elsewhere.
        self.fence_after_s = lease_s - self.interval_s
        self.bucket = bucket
        self.runs: dict[str, int] = {}
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()
        self._renewals: deque[int] = deque(maxlen=RENEWALS + 1)
        self.renewed = 0  # renewals so far
        self._last_renewed: float | None = None  # monotonic time a successful write was sent
        self._renewed = asyncio.Event()  # set (and replaced) at each successful write

    @staticmethod
    def _key(runner_id: str) -> str:
        return "".join(c if c.isalnum() or c in "-_=" else "_" for c in runner_id)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                try:
                    self._kv = await self.store.js.key_value(self.bucket)
                except (BucketNotFoundError, NotFoundError):
                    self._kv = await self.store.js.create_key_value(
                        KeyValueConfig(
                            bucket=self.bucket,
                            history=1,
                            ttl=7 * 24 * 3600,  # only to forget runners that never come back
                            replicas=self.store.settings.replicas,
                        )
                    )
            except Exception as exc:
                raise StoreUnavailable(f"runner lease bucket unavailable: {exc!r}") from exc
        return self._kv

    async def _write(self) -> int:
        """Write our entry now; returns its revision. Raises StoreUnavailable."""
        async with self._lock:  # entries leave in the order they were made
            sent = time.monotonic()
            value = json.dumps({"runs": self.runs, "at": time.time()}).encode()
            try:
                revision = int(await (await self._bucket()).put(self._key(self.runner_id), value))
            except StoreUnavailable:
                raise
            except Exception as exc:
                raise StoreUnavailable(f"lease not renewed: {exc!r}") from exc
            self._last_renewed = sent
            self._renewed.set()
            self._renewed = asyncio.Event()
            return revision

    async def beat(self) -> None:
        """Renew every interval (sooner again after a failure) until cancelled."""
        while True:
            try:
                revision = await self._write()
            except StoreUnavailable:
                await asyncio.sleep(min(0.5, self.interval_s))
                continue
            # Only these count when judging others: each was sent an interval after the last
            # one's acknowledgement, so they landed at least an interval apart.
            self._renewals.append(revision)
            self.renewed += 1
            await asyncio.sleep(self.interval_s)

    def silent_for(self) -> float:
        """Seconds since the last successful renewal was sent (infinite before the first)."""
        return float("inf") if self._last_renewed is None else time.monotonic() - self._last_renewed

    def fence_deadline(self) -> float | None:
        """The monotonic time our attempts are fenced at unless the lease is renewed before."""
        return None if self._last_renewed is None else self._last_renewed + self.fence_after_s

    async def renewal(self) -> None:
        """Until the next successful write of our entry."""
        await self._renewed.wait()

    def fresh(self) -> bool:
        """May this runner take new work? Only with a lease renewed lately."""
        return self.silent_for() < 3 * self.interval_s

    async def claim(self, run_id: str, attempt: int) -> None:
        """Record the attempt before it starts (raises StoreUnavailable: then do not start it)."""
        self.runs[run_id] = attempt
        try:
            await self._write()
        except StoreUnavailable:
            self.runs.pop(run_id, None)
            raise

    async def release(self, run_id: str, attempt: int | None = None) -> None:
        """Let the attempt go (after its outcome is written); the next renewal says so if this
        write does not get through. With ``attempt``, only that attempt's claim is let go."""
        if attempt is not None and self.runs.get(run_id) != attempt:
            return  # not ours to let go: a later attempt of the run claimed it since
        if self.runs.pop(run_id, None) is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._write()

    async def close(self) -> None:
        """At a clean stop: no entry means no live runs of ours. With the broker gone there is no
        one to tell (a delete would wait its whole timeout): the entry is then judged by its age,
        like a runner's that died."""
        if not self.store.nc.is_connected:
            return
        with contextlib.suppress(Exception):
            await (await self._bucket()).delete(self._key(self.runner_id))

    async def _entry(self, runner_id: str) -> LeaseEntry | None:
        await self._bucket()
        subject = f"$KV.{self.bucket}.{self._key(runner_id)}"
        try:
            # From the stream leader (direct gets may be answered by a lagging replica).
            msg = await self.store.js.get_last_msg(f"KV_{self.bucket}", subject, direct=False)
        except NotFoundError:
            return None
        except Exception as exc:
            raise StoreUnavailable(f"cannot read runner leases: {exc!r}") from exc
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            return None
        try:
            runs = json.loads(msg.data or b"{}").get("runs", {})
            return LeaseEntry(revision=int(msg.seq or 0), runs={str(k): int(v) for k, v in runs.items()})
        except (ValueError, AttributeError, TypeError):
            log.warning("unreadable lease entry of runner %s; treating it as gone", runner_id)
            return None

    async def holds(self, runner_id: str | None, run_id: str, attempt: int) -> bool:
        """Must ``attempt`` of ``run_id`` be left to ``runner_id``? Raises StoreUnavailable."""
        if not runner_id:
            return False
        own = list(self._renewals)  # taken before the read: see ``still_held``
        return still_held(await self._entry(runner_id), run_id, attempt, own, RENEWALS + 1)
