"""A page of a thread's history reads a bounded amount of states kept in the object store: at
most ``PAGE_STORED_BYTES`` (at least one checkpoint), so a page of 100 large states is not
gigabytes in the gateway; the page then holds fewer checkpoints than asked for, and the next
starts after the last one shown."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from crewyard.contract.threads import ThreadHistory
from crewyard.gateway import threads

STATE = 100_000


class History:
    """The read model's history of a thread of ``n`` checkpoints, each state in the object store."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def history(
        self, thread_id: str, *, limit: int, offset: int, full: bool = False
    ) -> tuple[list[dict[str, Any]], int, bool]:
        seqs = range(self.n - 1 - offset, max(-1, self.n - 1 - offset - limit), -1)
        return [_row(i) for i in seqs], self.n, False


def _row(i: int) -> dict[str, Any]:
    return {
        "checkpoint_id": f"ckp_{i:03d}",
        "run_id": f"run_{i:03d}",
        "values": None,
        "interrupts": [],
        "parent_checkpoint_id": None,
        "framework": "python",
        "created_at": "2026-01-01T00:00:00Z",
        "state_ref": f"{i:064x}",
    }


class Objects:
    def __init__(self) -> None:
        self.read: list[str] = []

    async def get_bytes(self, name: str) -> bytes:
        self.read.append(name)
        return json.dumps({"values": {"n": name, "pad": "x" * STATE}}).encode()


async def _page(g: Any, *, limit: int, offset: int) -> ThreadHistory:
    """A page as the API sends it (stored JSON kept as it is), read back as a client does."""
    view = await threads.checkpoints(g, "thr_x", limit=limit, offset=offset)
    return msgspec.json.decode(msgspec.json.encode(view), type=ThreadHistory)


async def test_a_page_of_large_states_stops_at_its_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "PAGE_STORED_BYTES", 3 * STATE)
    objects = Objects()
    g: Any = SimpleNamespace(rm=History(10), objects=objects)
    page = await _page(g, limit=8, offset=0)
    # Three states reach the bound: the page ends after them, with what it says is left.
    assert [c.checkpoint_id for c in page.history] == ["ckp_009", "ckp_008", "ckp_007"]
    assert len(objects.read) == 3 and (page.total, page.limit, page.offset) == (10, 8, 0)
    assert all(c.values and len(c.values["pad"]) == STATE for c in page.history)
    following = await _page(g, limit=8, offset=len(page.history))
    assert following.history[0].checkpoint_id == "ckp_006"


async def test_one_state_larger_than_the_bound_is_still_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "PAGE_STORED_BYTES", STATE // 2)
    g: Any = SimpleNamespace(rm=History(4), objects=Objects())
    page = await _page(g, limit=4, offset=2)
    assert [c.checkpoint_id for c in page.history] == ["ckp_001"]
