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
