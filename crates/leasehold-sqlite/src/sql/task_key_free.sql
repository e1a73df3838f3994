-- Free the idempotency key ?1 from a task that no longer counts, by its own rules: it ended in one of its
-- reuse states, or finished longer ago than its key is remembered. The task keeps its history.
UPDATE leasehold_tasks
   SET idempotency_key = NULL
 WHERE idempotency_key = CAST(?1 AS TEXT)
   AND (state IN (SELECT value FROM json_each(key_reuse_states))
        OR (key_retain_ms IS NOT NULL AND finalized_at IS NOT NULL
            AND CAST(unixepoch('subsec') * 1000 AS INTEGER) - finalized_at > key_retain_ms))
RETURNING id
