"""The runs list is written as JSON by SQLite: it must say exactly what run_view says."""

import json
import sqlite3

import msgspec

from crewyard.readmodel import DDL, RUN_JSON, run_view


def test_sql_json_of_a_run_equals_run_view():
    db = sqlite3.connect(":memory:")
    db.executescript(DDL)
    db.execute(
        "INSERT INTO runs (id, project, deployment_id, status, input, output, created_at, attempt, isolated,"
        " cancel_requested, last_seq, timeout_s, duration_ms, backend) VALUES"
        " ('run_a', 'p', 'dep_a', 'succeeded', '{\"x\": [1, 2], \"s\": \"é\"}', '\"ok\"',"
        " '2026-01-01', 1, 1, 0, 5, 2.5, 10, 'bwrap')"
    )
    db.execute(
        "INSERT INTO runs (id, project, deployment_id, status, input, created_at, attempt, cancel_requested,"
        " last_seq, error_message)"
        " VALUES ('run_b', 'p', 'dep_a', 'failed', '{}', '2026-01-02', 0, 1, 6, 'boom')"
    )
    db.row_factory = sqlite3.Row
    rows = db.execute(f"SELECT {RUN_JSON} AS j, * FROM runs").fetchall()
    assert len(rows) == 2
    for row in rows:
        values = dict(row)
        from_sql = json.loads(values.pop("j"))
        assert from_sql == json.loads(msgspec.json.encode(run_view(values)))


def test_the_stored_summary_of_a_run_is_run_view_without_input_and_output():
    db = sqlite3.connect(":memory:")
    db.executescript(DDL)
    db.execute(
        "INSERT INTO runs (id, project, deployment_id, status, input, output, created_at, attempt, isolated,"
        " cancel_requested, last_seq, error_reason) VALUES"
        " ('run_a', 'p', 'dep_a', 'failed', '{\"big\": \"input\"}', NULL,"
        " '2026-01-01', 2, 0, 1, 5, 'timeout')"
    )
    db.row_factory = sqlite3.Row
    values = dict(db.execute("SELECT * FROM runs").fetchone())
    summary = json.loads(values.pop("summary"))
    expected = json.loads(msgspec.json.encode(run_view(values)))
    del expected["input"], expected["output"]
    assert summary == expected
    # Kept current as the run changes (it is computed when the row is written).
    db.execute("UPDATE runs SET status = 'succeeded', error_reason = NULL WHERE id = 'run_a'")
    after = json.loads(db.execute("SELECT summary FROM runs").fetchone()[0])
    assert (after["status"], after["error_reason"]) == ("succeeded", None)
