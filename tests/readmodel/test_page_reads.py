"""A page of runs reads their summaries, not what the crews were given and returned.

Measured in bytes the process reads from the file (``rchar`` of ``/proc/self/io``), not in time:
a fresh connection has nothing cached, so every page SQLite needs is a ``pread``.
"""

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from crewyard.readmodel import ReadModel, open_db
from crewyard.readmodel._queries import RUN_COUNTS
from crewyard.readmodel.schema import SUMMARY_ERROR_CHARS
from crewyard.testing.processes import bytes_read

RUNS, BODY = 50, 200_000


async def _with_runs(path: Path, runs: list[dict[str, Any]]) -> ReadModel:
    """A read model whose file holds ``runs`` (columns by name; those a row needs defaulted)."""
    db = await open_db(path)
    for i, run in enumerate(runs):
        row = {
            "project": "p",
            "deployment_id": "dep_a",
            "status": "succeeded",
            "input": "{}",
            "created_at": "2026-01-01",
            "last_seq": i,
            **run,
        }
        marks = ", ".join("?" * len(row))
        await db.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({marks})", tuple(row.values()))
    await db.commit()
    await db.close()
    return await ReadModel.open(path)


async def test_a_page_of_runs_does_not_read_their_input_and_output(tmp_path: Path) -> None:
    body = msgspec.json.encode({"text": "x" * BODY}).decode()
    runs = [{"id": f"run_{i:04d}", "input": body, "output": body} for i in range(RUNS)]
    rm = await _with_runs(tmp_path / "readmodel.sqlite3", runs)
    try:
        for project, status in ((None, None), ("p", None), (None, "succeeded")):
            before = bytes_read()
            page = msgspec.json.decode(
                (await rm.runs(project=project, status=status, limit=RUNS, cursor=None))[0]
            )
            read = bytes_read() - before
            assert len(page) == RUNS
            assert all(run["status"] == "succeeded" and "xxxx" not in str(run) for run in page)
            # Input and output of 50 runs, 200 KB each: a page that walked through them would read 20 MB.
            assert read < 1_000_000, f"{project, status}: {read:,} bytes read for a page of {RUNS} summaries"
        # ``full`` is the page that does show them.
        full = msgspec.json.decode(
            (await rm.runs(project=None, status=None, limit=2, cursor=None, full=True))[0]
        )
        assert len(full) == 2 and all(run["input"]["text"] == "x" * BODY for run in full)
    finally:
        await rm.close()


async def test_a_page_shows_the_start_of_a_long_error_message_and_the_run_all_of_it(tmp_path: Path) -> None:
    long, short = "Traceback: " + "frame\n" * 10_000, "it broke"
    messages = (long, short, "x" * SUMMARY_ERROR_CHARS)
    runs = [{"id": f"run_{i:04d}", "status": "failed", "error_message": m} for i, m in enumerate(messages)]
    rm = await _with_runs(tmp_path / "readmodel.sqlite3", runs)
    try:
        page, _ = await rm.runs(project="p", status=None, limit=10, cursor=None)
        shown = {r["id"]: r["error_message"] for r in msgspec.json.decode(page)}
        assert shown["run_0000"] == long[:SUMMARY_ERROR_CHARS] + "\u2026"
        assert shown["run_0001"] == short and shown["run_0002"] == "x" * SUMMARY_ERROR_CHARS
        full, _ = await rm.runs(project="p", status=None, limit=10, cursor=None, full=True)
        assert {r["id"]: r["error_message"] for r in msgspec.json.decode(full)}["run_0000"] == long
        run = await rm.run("run_0000")
        assert run is not None and run["error_message"] == long
    finally:
        await rm.close()


async def test_pages_walk_every_run_newest_first_once_for_every_filter(tmp_path: Path) -> None:
    """SQLite joins a page's runs itself: they must come in the page's order, every filter's pages
    must meet without a gap or a repeat, and the last page has no cursor, also when it is full."""
    ids = [f"run_{i:04d}" for i in range(60)]
    rows = [
        (run_id, f"p{i % 2}", f"dep_{i % 3}", ("succeeded", "failed")[i % 5 == 0])
        for i, run_id in enumerate(ids)
    ]
    order = list(range(0, 60, 7)) + [i for i in range(60) if i % 7]  # stored out of id order
    stored = [dict(zip(("id", "project", "deployment_id", "status"), rows[i], strict=True)) for i in order]
    rm = await _with_runs(tmp_path / "readmodel.sqlite3", stored)
    try:
        filters: list[dict[str, str | None]] = [
            {},
            {"project": "p1"},
            {"status": "failed"},
            {"deployment_id": "dep_2"},
            {"project": "p0", "status": "succeeded"},  # two filters: read on the thread
        ]
        for full in (False, True):
            for given in filters:
                for limit in (1, 6, 7, 100):
                    project, status, dep = (
                        given.get("project"),
                        given.get("status"),
                        given.get("deployment_id"),
                    )
                    want = [
                        r[0]
                        for r in rows
                        if project in (None, r[1]) and dep in (None, r[2]) and status in (None, r[3])
                    ][::-1]
                    seen: list[str] = []
                    cursor: str | None = None
                    for _ in range(len(want) + 2):
                        page, cursor = await rm.runs(
                            project=project,
                            status=status,
                            deployment_id=dep,
                            limit=limit,
                            cursor=cursor,
                            full=full,
                        )
                        runs = msgspec.json.decode(page)
                        assert 0 < len(runs) <= limit or not want, (given, limit)
                        seen += [r["id"] for r in runs]
                        assert cursor is None or cursor == seen[-1], (given, limit)
                        if cursor is None:
                            break
                    assert seen == want, (given, limit, full)
        empty, cursor = await rm.runs(project="nobody", status=None, limit=5, cursor=None)
        assert msgspec.json.decode(empty) == [] and cursor is None
    finally:
        await rm.close()


async def test_a_full_page_is_not_one_sqlite_value(tmp_path: Path) -> None:
    """A ``full`` page holds inputs and outputs (up to megabytes each): joined into one value by
    SQLite, 500 of them could pass its bound on a value (1 GB). Here that bound is 1 MB and a page
    of five runs of 300 KB each is read whole."""
    body = msgspec.json.encode({"text": "y" * 300_000}).decode()
    rm = await _with_runs(
        tmp_path / "readmodel.sqlite3", [{"id": f"run_{i:04d}", "output": body} for i in range(5)]
    )
    try:
        assert rm.keyed is not None
        rm.keyed.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        page, cursor = await rm.runs(project="p", status=None, limit=5, cursor=None, full=True)
        runs = msgspec.json.decode(page)
        assert [r["id"] for r in runs] == [f"run_{i:04d}" for i in range(4, -1, -1)] and cursor is None
        assert all(len(r["output"]["text"]) == 300_000 for r in runs)
    finally:
        await rm.close()


async def test_a_full_page_ends_after_its_byte_bound_and_the_next_page_goes_on(tmp_path: Path) -> None:
    """500 runs of megabytes each in one answer took gigabytes of the gateway: a page with inputs
    and outputs ends once FULL_PAGE_BYTES of them are in it (at least one run), and its cursor
    leads to the rest."""
    from crewyard.readmodel._queries import FULL_PAGE_BYTES

    big = msgspec.json.encode({"text": "x" * (FULL_PAGE_BYTES // 5)}).decode()
    runs = [{"id": f"run_{i:04d}", "input": big, "output": big} for i in range(8)]
    rm = await _with_runs(tmp_path / "readmodel.sqlite3", runs)
    try:
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page, cursor = await rm.runs(project="p", status=None, limit=500, cursor=cursor, full=True)
            assert len(page) <= FULL_PAGE_BYTES
            shown = msgspec.json.decode(page)
            assert 1 <= len(shown) <= 2 and all(run["input"]["text"] for run in shown)
            seen += [run["id"] for run in shown]
            if cursor is None:
                break
        assert seen == [f"run_{i:04d}" for i in reversed(range(8))]
        # A single run larger than the bound is still shown, alone.
        huge = msgspec.json.encode({"text": "x" * FULL_PAGE_BYTES}).decode()
        await rm.close()
        rm = await _with_runs(
            tmp_path / "huge.sqlite3", [{"id": "run_0001", "input": huge}, {"id": "run_0002"}]
        )
        page, cursor = await rm.runs(project="p", status=None, limit=5, cursor="run_0002", full=True)
        assert [run["id"] for run in msgspec.json.decode(page)] == ["run_0001"] and cursor is None
    finally:
        await rm.close()


async def test_counting_runs_for_metrics_reads_an_index_not_the_runs(tmp_path: Path) -> None:
    """Every metrics scrape counts runs by status and backend: that read every run's row (158 ms
    per 100,000 runs, on the thread every other scanning read waits for)."""
    rm = await _with_runs(
        tmp_path / "readmodel.sqlite3", [{"id": "run_0001", "backend": "bwrap"}, {"id": "run_0002"}]
    )
    try:
        assert await rm.run_counts() == {("succeeded", "bwrap"): 1, ("succeeded", ""): 1}
    finally:
        await rm.close()
    db = sqlite3.connect(tmp_path / "readmodel.sqlite3")
    try:
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {RUN_COUNTS}"))
    finally:
        db.close()
    assert "COVERING INDEX runs_counts" in plan, plan
