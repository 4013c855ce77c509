"""A thread's stored JSON (its metadata and state) goes out as it is stored: never decoded into
Python objects only to be encoded again. A JSON of many small objects (``[{}, {}, ...]``) takes
some 24 times its size as objects: a page of 100 threads of 1 MiB each took gigabytes of the
gateway, and one state of 32 MiB kept in the object store some 800 MB per ``GET``. Memory is
counted with ``tracemalloc`` (what Python allocates, deterministic), never timed; pages are
bounded in bytes and walked to the end, each thread exactly once."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from crewyard.contract.threads import Thread, ThreadList
from crewyard.gateway import threads
from crewyard.readmodel import ReadModel, open_db
from crewyard.readmodel import _threads as rm_threads

#: A state of many small objects: what costs most as Python objects for its size.
MANY = msgspec.json.encode({"items": [{}] * 300_000})  # 900 KB


async def _threads(path: Path, n: int, *, state: bytes | None = MANY, ref: str | None = None) -> None:
    db = await open_db(path)
    for i in range(n):
        await db.execute(
            "INSERT INTO threads (id, project, name, status, metadata, state, state_ref, created_at,"
            " updated_at, last_seq) VALUES (?, 'p', 'default', 'idle', ?, ?, ?, '2026-01-01',"
            " '2026-01-01', ?)",
            (f"thr_{i:04d}", f'{{"n": {i}}}', state.decode() if state else None, ref, i),
        )
    await db.commit()
    await db.close()


class Objects:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get_bytes(self, name: str) -> bytes:
        return self.body


def _peak(before: int) -> int:
    _, peak = tracemalloc.get_traced_memory()
    return peak - before


async def test_a_thread_and_a_page_of_threads_go_out_without_decoding_their_state(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite3"
    await _threads(path, 8)
    rm = await ReadModel.open(path)
    g: Any = SimpleNamespace(rm=rm, thread=rm.thread, objects=None)
    try:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            body = msgspec.json.encode(await threads.thread_view(g, "thr_0003"))
            one = _peak(before)
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            rows, more = await rm.threads(project="p", name=None, status=None, limit=8, offset=0)
            page = msgspec.json.encode({"threads": [await threads._thread(g, r) for r in rows]})
            many = _peak(before)
        finally:
            tracemalloc.stop()
    finally:
        await rm.close()
    thread = msgspec.json.decode(body, type=Thread)
    assert thread.thread_id == "thr_0003" and thread.metadata == {"n": 3}
    assert msgspec.json.encode(thread.values) == MANY
    # The stored text, a copy or two of it and the answer: decoded, it was some 24 times its size.
    assert one < 6 * len(MANY), one
    listed = msgspec.json.decode(page, type=ThreadList).threads
    assert [t.thread_id for t in listed] == [f"thr_{i:04d}" for i in range(7, -1, -1)] and not more
    assert many < 6 * 8 * len(MANY), many


async def test_a_state_kept_in_the_object_store_goes_out_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite3"
    await _threads(path, 1, state=None, ref="ab" * 32)
    stored = msgspec.json.encode({"values": {"items": [{}] * 900_000}, "checkpoint": None, "interrupts": []})
    rm = await ReadModel.open(path)
    g: Any = SimpleNamespace(rm=rm, thread=rm.thread, objects=Objects(stored))
    try:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            body = msgspec.json.encode(await threads.thread_view(g, "thr_0000"))
            peak = _peak(before)
        finally:
            tracemalloc.stop()
    finally:
        await rm.close()
    thread = msgspec.json.decode(body, type=Thread)
    assert thread.values is not None and len(thread.values["items"]) == 900_000
    assert peak < 6 * len(stored), peak


async def test_a_page_of_threads_ends_at_its_byte_bound_and_the_next_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rm.sqlite3"
    await _threads(path, 10)
    monkeypatch.setattr(rm_threads, "PAGE_BYTES", 3 * len(MANY) + 100)  # (and their metadata)
    rm = await ReadModel.open(path)
    seen: list[str] = []
    pages = 0
    try:
        offset: int | None = 0
        while offset is not None:
            rows, more = await rm.threads(project="p", name=None, status=None, limit=5, offset=offset)
            assert 1 <= len(rows) <= 3  # never past the bound: three states of the ten
            seen += [r["id"] for r in rows]
            offset = offset + len(rows) if more else None
            pages += 1
        lean, more = await rm.threads(project="p", name=None, status=None, limit=5, offset=0, lean=True)
    finally:
        await rm.close()
    assert seen == [f"thr_{i:04d}" for i in range(9, -1, -1)] and pages == 4
    # The console's list reads none of the stored JSON: a whole page, no state.
    assert [r["id"] for r in lean] == seen[:5] and more
    assert all(r["values"] is None and bytes(r["metadata"]) == b"{}" for r in lean)


async def test_a_page_is_bounded_in_bytes_not_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rm.sqlite3"
    wide = msgspec.json.encode({"text": "\U0001f600" * 1000})  # 1,000 characters, 4,000 bytes
    await _threads(path, 4, state=wide)
    monkeypatch.setattr(rm_threads, "PAGE_BYTES", 9000)
    rm = await ReadModel.open(path)
    try:
        rows, more = await rm.threads(project="p", name=None, status=None, limit=4, offset=0)
    finally:
        await rm.close()
    assert [r["id"] for r in rows] == ["thr_0003", "thr_0002"] and more
