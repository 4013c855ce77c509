"""Tables and threads through a gateway whose projector stopped (another gateway's writes, or its
own, are on the stream and not in its read model): a lookup asks the stream's leader, so what
exists is a 503 ("catching up"), never a 404, and what does not exist is still a 404; a creation
answers 201 with what it stored, so a client has no reason to create it again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from handler_calls import handler_request

from crewyard.contract.schedules import ScheduleCreate
from crewyard.contract.tables import TableCreate
from crewyard.contract.threads import Thread, ThreadCreate
from crewyard.contract.triggers import TriggerCreate, TriggerSignature
from crewyard.core.events import ProjectCreated, TableCreated, ThreadCreated, make_event
from crewyard.core.ids import new_id
from crewyard.core.tables import Column
from crewyard.eventstore import EventStore, StoreUnavailable
from crewyard.gateway import context
from crewyard.gateway.access import RESOURCES
from crewyard.gateway.context import Gateway
from crewyard.gateway.errors import ApiError
from crewyard.gateway.schedules import create_schedule
from crewyard.gateway.tables import create_table
from crewyard.gateway.threads import create_thread
from crewyard.gateway.triggers import create_trigger
from crewyard.keyedlock import KeyedLock
from crewyard.secrets import SecretBox


class _StoppedReadModel:
    """A read model whose projector stopped at ``position``: it holds the projects it is given
    (with a ``default`` deployment name) and none of the tables or threads."""

    def __init__(self, position: int, projects: set[str]) -> None:
        self.at, self.projects = position, projects

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        return seq <= self.at

    async def catch_up(self, last_seq: int, timeout: float = 2.0) -> bool:
        return last_seq <= self.at

    async def project(self, name: str) -> dict[str, Any] | None:
        return {"name": name} if name in self.projects else None

    async def deployment_names(self, project: str) -> list[str]:
        return ["default"]

    async def live_count(self, kind: str, project: str) -> int:
        return 0

    async def table(self, table_id: str) -> None:
        return None

    async def table_by_name(self, project: str, name: str) -> None:
        return None

    async def thread(self, thread_id: str) -> None:
        return None

    async def thread_owner(self, thread_id: str) -> None:
        return None

    async def schedule(self, schedule_id: str) -> None:
        return None

    async def trigger(self, trigger_id: str) -> None:
        return None


@pytest.fixture
async def lagging_gateway(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setattr(context, "CATCH_UP_S", 0.2)  # how long a lookup gives the read model
    await _append(store, ProjectCreated(name="shop"), "shop")
    g = object.__new__(Gateway)
    g.store, g.creating = store, KeyedLock()
    g.rm = _StoppedReadModel(await store.last_seq(), {"shop"})  # type: ignore[assignment]
    g.settings = SimpleNamespace(max_tables=10, max_schedules=10, max_triggers=10)  # type: ignore[assignment]
    g.secrets = SecretBox(bytes(32))
    return g


async def _append(store: EventStore, payload: Any, aggregate_id: str) -> int:
    event = make_event(payload, project="shop", aggregate_id=aggregate_id, event_id=new_id("evt"))
    return await store.append(event)


async def _status(call: Any) -> int:
    with pytest.raises(ApiError) as caught:
        await call
    return caught.value.status


async def test_what_exists_on_the_stream_is_not_a_404(lagging_gateway: Gateway) -> None:
    g = lagging_gateway
    table_id, thread_id = new_id("tbl"), new_id("thr")
    await _append(
        g.store, TableCreated(name="t", columns=[Column(name="x", type="text")], by="api"), table_id
    )
    await _append(g.store, ThreadCreated(name="default"), thread_id)
    assert await _status(g.table(table_id)) == 503
    assert await _status(g.thread(thread_id)) == 503
    # The access guard finds a resource's project the same way.
    assert await _status(RESOURCES["table_id"].project(g, table_id)) == 503
    assert await _status(RESOURCES["thread_id"].project(g, thread_id)) == 503
    # What the stream does not have is a 404; what is not an id does not reach a subject.
    assert await _status(g.table(new_id("tbl"))) == 404
    assert await _status(g.thread(new_id("thr"))) == 404
    assert await _status(RESOURCES["table_id"].project(g, "tbl_x.>")) == 404
    assert await _status(g.thread("*")) == 404


async def test_a_creation_answers_with_what_it_stored(lagging_gateway: Gateway) -> None:
    g = lagging_gateway
    columns: list[Any] = [{"name": "x", "type": "text"}]
    data = TableCreate(project="shop", name="leads", columns=columns)
    table = await create_table.fn(handler_request(g), data)
    assert table.id.startswith("tbl_") and table.name == "leads" and table.row_count == 0
    assert [c.name for c in table.columns] == ["x"] and table.created_at == table.updated_at != ""

    answer = await create_thread.fn(handler_request(g), ThreadCreate(project="shop", values={"n": 1}))
    thread = msgspec.json.decode(answer.body, type=Thread)
    assert thread.thread_id.startswith("thr_") and thread.values == {"n": 1} and thread.status == "idle"
    assert thread.project == "shop" and thread.name == "default" and thread.created_at
    assert await g.store.last_seq_of(g.store.aggregate_filter("shop", "thread", thread.thread_id))


async def test_a_schedule_or_trigger_creation_answers_with_what_it_stored(lagging_gateway: Gateway) -> None:
    # Both read their new row back: a schedule answered 404 (a client retrying made a second
    # one), a trigger 503, and its token and generated secret were never shown again.
    g = lagging_gateway
    data = ScheduleCreate(cron="*/5 * * * *", timezone="Europe/Berlin", input={"n": 1}, name="tidy")
    schedule = await create_schedule.fn(handler_request(g), "shop", data)
    assert schedule.id.startswith("sch_") and schedule.project == "shop" and schedule.name == "tidy"
    assert schedule.cron == "*/5 * * * *" and schedule.input == {"n": 1} and schedule.status == "active"
    assert len(schedule.next_fire_times) == 3 and schedule.created_at and schedule.fired == 0
    stored = await g.store.load("shop", "schedule", schedule.id)
    assert schedule.created_at == stored[0].event.time.isoformat()

    data_t = TriggerCreate(name="hook", template={"x": "$.a"}, signature=TriggerSignature())
    trigger = await create_trigger.fn(handler_request(g), "shop", data_t)
    assert trigger.id.startswith("trg_") and trigger.name == "hook" and trigger.template == {"x": "$.a"}
    assert trigger.token and trigger.url == f"/webhooks/runs/{trigger.token}" and trigger.signature_secret
    assert trigger.signature_header == "X-Hub-Signature-256" and not trigger.revoked and trigger.created_at


async def test_a_creation_whose_stored_event_cannot_be_read_back_still_answers(
    lagging_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The schedule or trigger was created: a 503 because the read of its time failed had a
    # client retry and make another.
    g = lagging_gateway
    load = g.store.load

    async def failing_load(project: str, kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind in ("schedule", "trigger"):
            raise StoreUnavailable("the stream does not answer")
        return await load(project, kind, *args, **kwargs)

    monkeypatch.setattr(g.store, "load", failing_load)
    data = ScheduleCreate(cron="0 * * * *", timezone="UTC", input={}, name="hourly")
    schedule = await create_schedule.fn(handler_request(g), "shop", data)
    assert schedule.id.startswith("sch_") and schedule.created_at
    trigger = await create_trigger.fn(handler_request(g), "shop", TriggerCreate(name="hook2"))
    assert trigger.token and trigger.created_at
