"""A thread run whose ``run.queued`` the store certainly did not take: the request fails (the
store's error), and the thread is free again at once, so the caller's retry starts a run rather
than getting a 409 until the thread keeper gives up on the run that never came. One that may have
landed (no answer came) is left to the keeper."""

from __future__ import annotations

from typing import Any

import pytest
from handler_calls import handler_request

from crewyard.contract.threads import ThreadRunCreate
from crewyard.core.events import Event, RunQueued, ThreadCreated, make_event
from crewyard.core.ids import new_id
from crewyard.core.versions import Resolved
from crewyard.eventstore import EventStore, StoreUnavailable
from crewyard.gateway.context import Gateway
from crewyard.gateway.threads import create_thread_run
from crewyard.threads import load_thread


class _RefusingRuns:
    """The test's store, except that it refuses ``run.queued`` while ``refusing`` is set."""

    def __init__(self, store: EventStore, *, maybe_stored: bool = False) -> None:
        self.inner, self.refusing, self.maybe_stored = store, True, maybe_stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, event: Event, **kwargs: Any) -> int:
        if self.refusing and isinstance(event.data, RunQueued):
            raise StoreUnavailable("no stream took it (on purpose)", maybe_stored=self.maybe_stored)
        return await self.inner.append(event, **kwargs)


class _ReadModel:
    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        return True


def _gateway(store: _RefusingRuns) -> Gateway:
    g = object.__new__(Gateway)
    g.store = store  # type: ignore[assignment]
    g.rm = _ReadModel()  # type: ignore[assignment]

    async def resolve_version(**_: Any) -> Resolved:
        return Resolved(
            deployment_id="dep_threads", project="shop", name="default", number=1, environment="production"
        )

    g.resolve_version = resolve_version  # type: ignore[method-assign]
    return g


async def _thread(store: EventStore) -> str:
    thread_id = new_id("thr")
    created = make_event(
        ThreadCreated(name="default"), project="shop", aggregate_id=thread_id, event_id=new_id("evt")
    )
    await store.append(created)
    return thread_id


async def test_a_run_the_store_did_not_take_leaves_the_thread_free(store: EventStore) -> None:
    thread_id = await _thread(store)
    refusing = _RefusingRuns(store)
    request = handler_request(_gateway(refusing))

    with pytest.raises(StoreUnavailable):
        await create_thread_run.fn(request, thread_id, ThreadRunCreate(input={"n": 1}))
    state, _ = await load_thread(store, thread_id, "shop")
    assert state.status == "idle" and state.active_run_id is None

    refusing.refusing = False  # the broker answers again: the retry runs
    started = await create_thread_run.fn(request, thread_id, ThreadRunCreate(input={"n": 1}))
    state, _ = await load_thread(store, thread_id, "shop")
    assert state.status == "busy" and state.active_run_id == started.run_id


async def test_a_run_that_may_have_landed_is_left_to_the_thread_keeper(store: EventStore) -> None:
    # No answer came: the run may be stored all the same and start later; freeing its thread now
    # could let a second run start beside it. The keeper judges it after its looks.
    thread_id = await _thread(store)
    request = handler_request(_gateway(_RefusingRuns(store, maybe_stored=True)))
    with pytest.raises(StoreUnavailable):
        await create_thread_run.fn(request, thread_id, ThreadRunCreate(input={"n": 1}))
    state, _ = await load_thread(store, thread_id, "shop")
    assert state.status == "busy" and state.active_run_id is not None
