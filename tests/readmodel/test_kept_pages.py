"""A page of runs asked again while nothing was committed is the page it was, without a read of
the file; any commit by another connection (the projector's) makes the next ask read it again."""

import sqlite3
from pathlib import Path

import msgspec

from crewyard.readmodel import ReadModel, open_db


def _insert(db: sqlite3.Connection, run_id: str, status: str = "succeeded") -> None:
    db.execute(
        "INSERT INTO runs (id, project, deployment_id, status, input, created_at, last_seq)"
        " VALUES (?, 'p', 'dep_a', ?, '{}', '2026-01-01', 1)",
        (run_id, status),
    )


def _ids(page: bytes) -> list[str]:
    return [run["id"] for run in msgspec.json.decode(page)]


async def test_a_page_asked_again_is_read_again_only_after_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "readmodel.sqlite3"
    await (await open_db(path)).close()
    writer = sqlite3.connect(path, isolation_level=None)  # as the projector: another connection
    for i in range(3):
        _insert(writer, f"run_000{i}")
    rm = await ReadModel.open(path)
    assert rm.keyed is not None
    statements: list[str] = []
    rm.keyed.set_trace_callback(statements.append)
    try:
        first = await rm.runs(project="p", status=None, limit=2, cursor=None)
        assert _ids(first[0]) == ["run_0002", "run_0001"] and first[1] == "run_0001"
        read = len(statements)
        assert any("FROM runs" in s for s in statements)

        again = await rm.runs(project="p", status=None, limit=2, cursor=None)
        assert again == first
        assert statements[read:] == ["PRAGMA data_version"]  # the file was not read for the page

        # Another page, another filter: each read once, then kept apart.
        other = await rm.runs(project="p", status="failed", limit=2, cursor=None)
        assert _ids(other[0]) == []
        assert _ids((await rm.runs(project="p", status=None, limit=2, cursor="run_0001"))[0]) == ["run_0000"]

        _insert(writer, "run_0003")
        _insert(writer, "run_0004", status="failed")
        now = await rm.runs(project="p", status=None, limit=2, cursor=None)
        assert _ids(now[0]) == ["run_0004", "run_0003"] and now[1] == "run_0003"
        assert _ids((await rm.runs(project="p", status="failed", limit=2, cursor=None))[0]) == ["run_0004"]

        writer.execute("UPDATE runs SET status = 'failed' WHERE id = 'run_0003'")
        failed = await rm.runs(project="p", status="failed", limit=2, cursor=None)
        assert _ids(failed[0]) == ["run_0004", "run_0003"]
    finally:
        writer.close()
        await rm.close()


async def test_large_pages_and_many_filters_are_not_all_kept(tmp_path: Path) -> None:
    path = tmp_path / "readmodel.sqlite3"
    await (await open_db(path)).close()
    writer = sqlite3.connect(path, isolation_level=None)
    for i in range(40):
        _insert(writer, f"run_{i:04d}")
    writer.close()
    rm = await ReadModel.open(path)
    try:
        rm.pages.largest = 1_000  # a page of 40 summaries is more than this
        big, _ = await rm.runs(project="p", status=None, limit=40, cursor=None)
        assert len(big) > 1_000 and not rm.pages._kept
        rm.pages.largest = 1 << 20
        asked = [("p", None, i % 3 + 1, f"run_{i:04d}", None) for i in range(1, rm.pages.most + 10)]
        for project, status, limit, cursor, _ in asked:
            await rm.runs(project=project, status=status, limit=limit, cursor=cursor)
        # The most recently asked are the ones kept.
        assert list(rm.pages._kept) == asked[-rm.pages.most :]
    finally:
        await rm.close()


async def test_a_page_read_on_the_thread_is_not_kept(tmp_path: Path) -> None:
    """A page whose filters no index serves is read on the thread's connection, which stays in
    an older snapshot while another of its statements is open (a long page read a few rows at a
    time): such a page is answered, never kept under the newer version."""
    path = tmp_path / "readmodel.sqlite3"
    await (await open_db(path)).close()
    writer = sqlite3.connect(path, isolation_level=None)
    for i in range(3):
        _insert(writer, f"run_000{i}")
    rm = await ReadModel.open(path)
    try:
        open_statement = await rm.db.execute("SELECT id FROM runs")
        await open_statement.fetchone()
        _insert(writer, "run_0009")  # committed while the thread's connection holds its snapshot
        await rm.runs(project="p", status="succeeded", limit=2, cursor=None)  # two filters: the thread
        await open_statement.close()
        page, _ = await rm.runs(project="p", status="succeeded", limit=2, cursor=None)
        assert _ids(page) == ["run_0009", "run_0002"]
    finally:
        writer.close()
        await rm.close()
