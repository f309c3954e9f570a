-- airlock schema v1: key/value metadata, vault records, tasks, revocations, audit.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Vault records. The value is never stored in plaintext: `ciphertext` is the
-- AEAD-sealed value under a per-secret data key, `wrapped_key` that data key
-- sealed by the master key identified by `key_id`.
CREATE TABLE secrets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    environment TEXT NOT NULL,
    tier        TEXT NOT NULL,
    upstream    TEXT NOT NULL,
    description TEXT,
    version     INTEGER NOT NULL,
    key_id      TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (name, environment)
);

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    environment TEXT NOT NULL,
    grants      TEXT NOT NULL,
    purpose     TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    created_by  TEXT NOT NULL
);

-- Revocations are an append-only feed: replicas poll (or LISTEN for) rows
-- with seq greater than the last one they saw.
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL UNIQUE,
    revoked_at INTEGER NOT NULL,
    reason     TEXT NOT NULL
);

-- Append-only, hash-chained audit log. `hash` = sha256(prev_hash || canonical record).
CREATE TABLE audit (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    ts_ms       INTEGER NOT NULL,
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
