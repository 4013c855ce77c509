"""Concurrency limits as leases in a JetStream key-value bucket, shared by every runner.

For each limited scope (``dep.<id>``, ``proj.<name>``) one key holds ``{"holders": [...],
"queue": [...]}``. A run takes a slot when the scope has room and it is the oldest waiting run
(run ids sort by creation time, so runs start in the order they were queued). Every change is
a compare-and-swap on the key's revision, so limits hold across runner instances. A holder whose
run has ended (terminal event in the stream) is dropped on the next look, which is what makes a
crash unable to leak a slot: the lease is released by the run's terminal event, not by the
runner that held it.

A run that finds no room is told how far back in line it stands (``Turn.rounds``: the slot
fillings before its turn could come), and its message comes back later the further back it is:
thousands of runs waiting in one scope must not each read the store every second (they took the
runners' time from every other project's runs). A look that changes nothing writes nothing.

A run's message may be delivered again while an execution of it is still getting ready (its
set-up took longer than ``ack_wait``), to this runner or another: two executions of one run then
race to append ``run.started``, and only one wins. Both count against the limit as the one run
they are, so ``holders`` lists a run once per execution that took its slot, and each execution
gives back only its own reference: the one that lost the race never frees the winner's slot. A
reference left by a runner that died before it gave it back is dropped with the run's end.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from crewyard.core.crewfile import CrewConfig
from crewyard.core.deployment_state import fold_project
from crewyard.eventstore import EventStore, StoreUnavailable

#: (run_id) → True when the run has ended.
IsOver = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class Turn:
    """What ``acquire`` found: a slot taken in every scope (true), or a wait (false)."""

    taken: bool
    #: Waiting: how many times the full scope's slots must be taken by runs ahead in line before
    #: this run's turn can come (0: it is next).
    rounds: int = 0

    def __bool__(self) -> bool:
        return self.taken


class Slots:
    def __init__(self, store: EventStore, bucket: str = "CREWYARD_SLOTS") -> None:
        self.store = store
        self.bucket = bucket
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self.store.js.key_value(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                self._kv = await self.store.js.create_key_value(
                    KeyValueConfig(bucket=self.bucket, history=1, replicas=self.store.settings.replicas)
                )
        return self._kv

    async def _change(self, key: str, change: Callable[[dict[str, list[str]]], Awaitable[bool]]) -> bool:
        """Apply ``change`` to the key's value with compare-and-swap; returns what ``change`` returned."""
        kv = await self._bucket()
        for _ in range(50):
            try:
                entry = await kv.get(key)
                value = json.loads(entry.value or b"{}")
                revision: int | None = entry.revision
            except KeyNotFoundError:
                value, revision = {}, None
            value.setdefault("holders", [])
            value.setdefault("queue", [])
            before = json.dumps(value)
            result = await change(value)
            data = json.dumps(value).encode()
            if revision is not None and data == before.encode():
                return result  # nothing changed: no write (waiting runs look again and again)
            try:
                if revision is None:
                    await kv.create(key, data)
                else:
                    await kv.update(key, data, last=revision)
                return result
            except KeyWrongLastSequenceError:
                continue
        raise StoreUnavailable(f"slot {key} kept changing")

    async def acquire(self, run_id: str, limits: dict[str, int], is_over: IsOver) -> Turn:
        """Take a slot in every limited scope, or none (then the run waits its turn). Each taken
        turn is one reference of this execution's, to give back with one ``release``."""
        taken: list[str] = []
        place = 0  # the waiting run's place in the line of the scope that has no room
        for key, limit in sorted(limits.items()):

            async def take(value: dict[str, list[str]], limit: int = limit) -> bool:
                nonlocal place
                ended = {r for r in set(value["holders"]) if r != run_id and await is_over(r)}
                value["holders"] = [r for r in value["holders"] if r not in ended]
                if run_id in value["holders"]:  # another execution of the run holds it: share it
                    value["holders"].append(run_id)
                    return True
                # A holder is never in line (one left there by an older release would hold back
                # every run behind it while it runs).
                line = sorted((set(value["queue"]) - set(value["holders"])) | {run_id})
                value["queue"] = await _without_ended_ahead(line, run_id, is_over)
                if len(set(value["holders"])) < limit and value["queue"][0] == run_id:
                    value["queue"].remove(run_id)
                    value["holders"].append(run_id)
                    return True
                place = value["queue"].index(run_id)
                return False

            if not await self._change(key, take):
                for held in taken:  # do not sit on one scope's slot while waiting for another
                    await self.release(run_id, [held], keep_queued=True)
                return Turn(False, rounds=place // max(limit, 1))
            taken.append(key)
        return Turn(True)

    async def release(self, run_id: str, keys: list[str], *, keep_queued: bool = False) -> None:
        """Give back one reference (what one ``acquire`` took): the run's slot stays taken while
        another execution of it holds one."""
        for key in keys:

            async def drop(value: dict[str, list[str]]) -> bool:
                if run_id in value["holders"]:
                    value["holders"].remove(run_id)  # one of them
                if keep_queued and run_id not in value["holders"]:  # (else: still held, not waiting)
                    value["queue"] = sorted(set(value["queue"]) | {run_id})
                elif run_id in value["queue"]:
                    value["queue"].remove(run_id)
                return True

            with contextlib.suppress(StoreUnavailable):
                await self._change(key, drop)


async def _without_ended_ahead(queue: list[str], run_id: str, is_over: IsOver) -> list[str]:
    """``queue`` without the runs ahead of ``run_id`` that have ended, up to the first that has
    not (then ``run_id`` waits whatever the rest are): a look costs the ended runs it drops and
    one more, not a read of every run in line, as each of hundreds of waiting runs looks again."""
    at = queue.index(run_id)
    for i, waiting in enumerate(queue[:at]):
        if not await is_over(waiting):
            return queue[i:]  # those before it had ended
    return queue[at:]


async def run_limits(
    store: EventStore, project: str, deployment_id: str, config: CrewConfig, *, current: bool = True
) -> dict[str, int]:
    """The limited scopes a run of this deployment counts against, with their limits (the
    project's read from the stream's leader unless ``current`` is False)."""
    limits = {}
    if config.max_concurrent_runs:
        limits[f"dep.{deployment_id}"] = config.max_concurrent_runs
    proj = fold_project(project, await store.load(project, "project", project, current=current))
    if proj.max_concurrent_runs:
        limits[f"proj.{project}"] = proj.max_concurrent_runs
    return limits
