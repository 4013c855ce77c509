"""A keyed row insert repeated through a gateway whose read model is behind the stream, after the
stream's de-duplication window (here: the first insert's event has an id the repeat's does not
match, as once the window has passed): the read model is given time to hold the table's last
event before the key counts as new, so the rows are never inserted twice — answered 200 with
the first insert's rows once it catches up, 503 while it does not."""

from __future__ import annotations

from typing import Any

import pytest
from handler_calls import handler_request

from crewyard.core.events import NewRow, RowsInserted, TableCreated, make_event
from crewyard.core.ids import new_id
from crewyard.core.tables import Column
from crewyard.eventstore import EventStore
from crewyard.gateway.context import Gateway
from crewyard.gateway.errors import ApiError
from crewyard.gateway.idempotency import body_hash
from crewyard.gateway.tables import insert_rows

BODY = {"name": "Acme"}


class _ReadModel:
    """Holds the table and, once its projector has reached ``knows_key_at``, the key's insert."""

    def __init__(self, table_id: str, position: int, knows_key_at: int, key_seq: int) -> None:
        self.table_id, self.at, self.knows_key_at, self.key_seq = table_id, position, knows_key_at, key_seq

    async def wait_for(self, seq: int, timeout: float = 5.0) -> bool:
        if seq <= self.knows_key_at:
            self.at = max(self.at, seq)
        return seq <= self.at

    async def table(self, table_id: str) -> dict[str, Any] | None:
        columns = [{"name": "name", "type": "text"}]
        return {"id": table_id, "project": "shop", "name": "leads", "columns": columns}

    async def rows_by_idempotency_key(self, table_id: str, key: str) -> tuple[int, str | None] | None:
        return (self.key_seq, body_hash(BODY)) if self.at >= self.key_seq else None


async def _setup(store: EventStore, catches_up: bool) -> tuple[Gateway, str, int]:
    table_id = new_id("tbl")
    created = TableCreated(name="leads", columns=[Column(name="name", type="text")])
    await store.append(make_event(created, project="shop", aggregate_id=table_id, event_id=new_id("evt")))
    first = RowsInserted(
        rows=[NewRow(id=new_id("row"), values=BODY)], idempotency_key="k1", request_hash=body_hash(BODY)
    )
    seq = await store.append(make_event(first, project="shop", aggregate_id=table_id, event_id=new_id("evt")))
    g = object.__new__(Gateway)
    g.store = store
    g.rm = _ReadModel(table_id, seq - 1, seq if catches_up else 0, seq)  # type: ignore[assignment]
    return g, table_id, seq


async def _body() -> Any:
    return BODY


async def test_a_repeat_waits_for_the_read_model_and_answers_the_first_insert(store: EventStore) -> None:
    g, table_id, seq = await _setup(store, catches_up=True)
    answer = await insert_rows.fn(handler_request(g, json=_body), table_id, dict(BODY), idempotency_key="k1")
    assert answer.status_code == 200 and answer.content["name"] == "Acme"
    assert await store.last_seq_of(store.aggregate_filter("shop", "table", table_id)) == seq  # no second


async def test_a_repeat_is_a_503_while_the_read_model_stays_behind(store: EventStore) -> None:
    g, table_id, seq = await _setup(store, catches_up=False)
    with pytest.raises(ApiError) as refused:
        await insert_rows.fn(handler_request(g, json=_body), table_id, dict(BODY), idempotency_key="k1")
    assert refused.value.status == 503 and "catching up" in refused.value.message, refused.value.message
    assert await store.last_seq_of(store.aggregate_filter("shop", "table", table_id)) == seq
