-- The audit log is written on every gateway request and read rarely. No query uses
-- `audit_action`: the listing filters actions with `LIKE prefix% ESCAPE`, which neither
-- backend answers from a plain index, so it only cost a B-tree insert per record.
DROP INDEX IF EXISTS audit_action;
