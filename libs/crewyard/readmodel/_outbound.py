"""Tables of webhooks and their deliveries, triggers and schedules (written by the projector's
``outbound`` handlers)."""

from __future__ import annotations

TABLES = ("webhooks", "webhook_deliveries", "webhook_attempts", "triggers", "schedules")

DDL = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    deployment TEXT,
    description TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_project ON webhooks (project, id);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    project TEXT NOT NULL,
    event TEXT NOT NULL,
    source_event_id TEXT NOT NULL,
    source_type TEXT NOT NULL,
    source_aggregate TEXT NOT NULL,
    source_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    seq INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    error TEXT,
    latency_ms INTEGER NOT NULL,
    response_excerpt TEXT NOT NULL,
    next_attempt_at TEXT
);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);

CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    deployment_id TEXT,
    environment TEXT NOT NULL,
    template TEXT,
    signature_header TEXT,
    signature_secret TEXT,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS triggers_project ON triggers (project, id);

CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    input TEXT NOT NULL,
    deployment_id TEXT,
    environment TEXT NOT NULL,
    overlap TEXT NOT NULL,
    catch_up TEXT NOT NULL,
    catch_up_limit INTEGER NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    plan_from TEXT NOT NULL,
    last_planned_at TEXT,
    last_run_id TEXT,
    fired INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS schedules_project ON schedules (project, id);
"""
