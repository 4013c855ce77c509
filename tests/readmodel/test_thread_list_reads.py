"""A page of a project's threads reads the threads it shows, not every thread of the project:
a listing without a name walks the ``(project, id)`` index instead of sorting every row (and its
state, inline up to 1 MiB). Measured in bytes read from the file, as test_page_reads.py does."""

import json
from pathlib import Path

from crewyard.readmodel import ReadModel, open_db
from crewyard.testing.processes import bytes_read

THREADS, STATE = 100, 200_000


async def test_a_page_of_a_projects_threads_reads_only_that_page(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite3"
    db = await open_db(path)
    state = json.dumps({"notes": "x" * STATE})
    for i in range(THREADS):
        await db.execute(
            "INSERT INTO threads (id, project, name, status, metadata, state, created_at, updated_at,"
            " last_seq) VALUES (?, 'p', ?, 'idle', '{}', ?, '2026-01-01', '2026-01-01', ?)",
            (f"thr_{i:04d}", f"name-{i % 7}", state, i),
        )
    await db.commit()
    await db.close()

    rm = await ReadModel.open(path)  # a fresh connection: nothing of the file cached
    try:
        before = bytes_read()
        page, _ = await rm.threads(project="p", name=None, status=None, limit=3, offset=0)
        read = bytes_read() - before
    finally:
        await rm.close()
    assert [t["id"] for t in page] == ["thr_0099", "thr_0098", "thr_0097"]
    # Three states and some pages of the index: a sort would have read every one of them.
    assert read < 6 * STATE, read
