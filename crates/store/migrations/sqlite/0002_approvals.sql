-- Approval requests for operations policy says need a human.
-- A request is identified by a hash of its exact bytes (method, target, body);
-- an approval is consumed at most once.
CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    task_id      TEXT NOT NULL,
    agent        TEXT NOT NULL,
    upstream     TEXT NOT NULL,
    operation    TEXT NOT NULL,
    resource     TEXT,
    environment  TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    decision_note TEXT,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX approvals_lookup ON approvals (task_id, request_hash, status);
