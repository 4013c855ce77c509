"""Whether an insert is far from its table's bound is decided on what the read model has of the
table, and that may be behind the stream (another gateway's writes, a read model being rebuilt):
every stream event after the table's last one it applied is counted as an insert of the largest
size, so a read model behind never lets inserts through unchecked near the bound."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from crewyard.core import tables as core
from crewyard.gateway import tables
from crewyard.readmodel import TableSize


class Store:
    def __init__(self, last: int) -> None:
        self.last = last

    def aggregate_filter(self, project: str, aggregate: str, an_id: str) -> str:
        return f"x.{project}.{aggregate}.{an_id}.>"

    async def last_seq_of(self, filt: str) -> int:
        return self.last


async def test_a_read_model_behind_counts_what_it_may_not_have_seen() -> None:
    caught_up: Any = SimpleNamespace(store=Store(last=40))
    assert await tables._at_most(caught_up, "p", "tbl_x", TableSize(10, 1000, 40)) == (10, 1000)
    behind: Any = SimpleNamespace(store=Store(last=340))
    rows, stored = await tables._at_most(behind, "p", "tbl_x", TableSize(10, 1000, 40))
    assert (rows, stored) == (10 + 300 * core.MAX_ROWS_PER_INSERT, 1000 + 300 * core.MAX_INSERT_BYTES)
    # Far from full as the read model has it; near once what it may have missed is counted.
    assert core.far_from_full(10, 1000, 1, 100) and not core.far_from_full(rows, stored, 1, 100)
