-- airlock schema v1 (PostgreSQL): same shape as the SQLite schema.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE secrets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    environment TEXT NOT NULL,
    tier        TEXT NOT NULL,
    upstream    TEXT NOT NULL,
    description TEXT,
    version     BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (name, environment)
);

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    environment TEXT NOT NULL,
    grants      TEXT NOT NULL,
    purpose     TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    created_by  TEXT NOT NULL
);

CREATE TABLE revocations (
    seq        BIGSERIAL PRIMARY KEY,
    task_id    TEXT NOT NULL UNIQUE,
    revoked_at BIGINT NOT NULL,
    reason     TEXT NOT NULL
);

CREATE TABLE audit (
    seq         BIGINT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    ts_ms       BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    task_id     TEXT,
    detail      TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_task ON audit (task_id);
CREATE INDEX audit_action ON audit (action);
