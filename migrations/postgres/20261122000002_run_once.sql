-- Run-once effects: idempotency keys on tasks, and the record of effects that happened.

-- An idempotency key belongs to at most one task at a time. When its task stops counting (it ended in a
-- state the enqueuer chose not to count, or finished longer ago than the key is remembered), the next
-- enqueue with that key frees it from the old task (which keeps its history) and takes it.
ALTER TABLE leasehold.tasks
    ADD COLUMN idempotency_key  text,
    ADD COLUMN key_reuse_states text[],
    ADD COLUMN key_retain_ms    bigint;
CREATE UNIQUE INDEX tasks_idempotency_key_idx ON leasehold.tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- "The effect with this key happened, with this outcome", written in the same transaction as the
-- effect itself, so a retried or taken-over attempt finds it and skips the effect.
CREATE TABLE leasehold.effects (
    key         text        PRIMARY KEY,
    task_id     uuid,
    fence       bigint,
    outcome     jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
