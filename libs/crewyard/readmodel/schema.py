"""The SQLite read model's tables. Derived data only: ``rebuild`` recreates it from the stream.

``SCHEMA_VERSION`` changes whenever a table does: a file made for another version is emptied when
it is opened and the projector replays the stream into the new tables (``_db.open_db``).
"""

from __future__ import annotations

from . import _outbound as outbound
from . import _tables as tables
from . import _threads as threads

SCHEMA_VERSION = 9


def json_flag(col: str) -> str:
    return f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN json('true') ELSE json('false') END"


#: How much of a failed run's message a page of runs shows (a crew's traceback may be 64 KiB, and
#: a page of 50 such runs megabytes): the first characters and an ellipsis. The run has it whole.
SUMMARY_ERROR_CHARS = 1000


def cut_text(col: str, chars: int) -> str:
    """SQL: the text in ``col``, its first ``chars`` characters and an ellipsis when longer."""
    return f"CASE WHEN length({col}) > {chars} THEN substr({col}, 1, {chars}) || '\u2026' ELSE {col} END"


#: A run as a page of ``GET /v1/runs`` shows it: ``run_view`` without its input and output (the
#: bodies a crew controls, often the bulk of a run), its error message cut. Stored with the row —
#: computed once per write of the run, not once per read of every page it is on: a page of 50 is
#: then a plain read of 50 strings (0.07 ms against 0.4 to 0.6 ms for building them in the query).
RUN_SUMMARY_JSON = (
    "json_object('id', id, 'run_id', id, 'project', project, 'deployment_id', deployment_id,"
    " 'version_id', 'ver_' || substr(deployment_id, 5), 'version_number', version_number,"
    " 'environment', environment, 'thread_id', thread_id, 'status', status,"
    f" 'error_message', {cut_text('error_message', SUMMARY_ERROR_CHARS)},"
    " 'error_reason', error_reason, 'created_at', created_at, 'started_at', started_at,"
    " 'completed_at', completed_at, 'duration_ms', duration_ms, 'attempt', attempt, 'backend', backend,"
    f" 'isolated', {json_flag('isolated')}, 'cancel_requested', {json_flag('cancel_requested')},"
    " 'timeout_s', timeout_s)"
)

TABLES = (
    "projects",
    "deployments",
    "environments",
    "runs",
    "artifacts",
    "env",
    *outbound.TABLES,
    *tables.TABLES,
    *threads.TABLES,
)

DDL = f"""
CREATE TABLE IF NOT EXISTS projector_position (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO projector_position (id, seq) VALUES (1, 0);

CREATE TABLE IF NOT EXISTS projects (
    name TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    current_deployment_id TEXT,
    max_concurrent_runs INTEGER
);

CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    version_number INTEGER NOT NULL,
    environment TEXT,
    status TEXT NOT NULL,
    source_digest TEXT NOT NULL,
    source_size INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_at TEXT NOT NULL,
    build_started_at TEXT,
    ready_at TEXT,
    env_digest TEXT,
    backend TEXT,
    image TEXT,
    cached INTEGER,
    build_duration_ms INTEGER,
    error_message TEXT,
    idempotency_key TEXT,
    request_hash TEXT
);
CREATE INDEX IF NOT EXISTS deployments_idempotency ON deployments (idempotency_key);
CREATE INDEX IF NOT EXISTS deployments_project ON deployments (project, id);
CREATE INDEX IF NOT EXISTS deployments_name ON deployments (project, name, version_number);

-- Which version each environment of a deployment name runs.
CREATE TABLE IF NOT EXISTS environments (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, name, environment)
);

CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    version_number INTEGER,
    environment TEXT NOT NULL DEFAULT 'production',
    thread_id TEXT,
    status TEXT NOT NULL,
    error_message TEXT,
    error_reason TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    duration_ms INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    backend TEXT,
    isolated INTEGER,
    runner_id TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    timeout_s REAL,
    idempotency_key TEXT,
    request_hash TEXT,
    last_seq INTEGER NOT NULL,
    summary TEXT GENERATED ALWAYS AS ({RUN_SUMMARY_JSON}) STORED,
    -- What a crew was given and returned: last in the row, because SQLite reads a row's columns
    -- in order, and a large body sits on overflow pages that a read of any later column (the
    -- summary a page of runs shows) would have to walk through.
    input TEXT NOT NULL,
    output TEXT
);
CREATE INDEX IF NOT EXISTS runs_project ON runs (project, id);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, id);
-- Runs by status and backend (every metrics scrape counts them): read from this index alone, not
-- from every run's row with its input and output.
CREATE INDEX IF NOT EXISTS runs_counts ON runs (status, backend);
CREATE INDEX IF NOT EXISTS runs_deployment ON runs (deployment_id, id);
CREATE INDEX IF NOT EXISTS runs_idempotency ON runs (idempotency_key);
CREATE INDEX IF NOT EXISTS runs_thread ON runs (thread_id);

CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);

-- environment '' holds the values for every environment.
CREATE TABLE IF NOT EXISTS env (
    project TEXT NOT NULL,
    key TEXT NOT NULL,
    environment TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, key, environment)
);
"""
DDL += outbound.DDL + tables.DDL + threads.DDL
