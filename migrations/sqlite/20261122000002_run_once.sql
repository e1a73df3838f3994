-- Run-once effects: idempotency keys on tasks, and the record of effects that happened.
-- (See the PostgreSQL migration of the same name for the reasoning.)

ALTER TABLE leasehold_tasks ADD COLUMN idempotency_key TEXT;
ALTER TABLE leasehold_tasks ADD COLUMN key_reuse_states TEXT;
ALTER TABLE leasehold_tasks ADD COLUMN key_retain_ms INTEGER;
CREATE UNIQUE INDEX leasehold_tasks_idempotency_key_idx ON leasehold_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE leasehold_effects (
    key         TEXT    PRIMARY KEY NOT NULL,
    task_id     TEXT,
    fence       INTEGER,
    outcome     TEXT,
    recorded_at INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;
