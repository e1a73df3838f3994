-- Free the idempotency key $1 from a task that no longer counts, by its own rules: it ended in one of
-- its reuse states, or finished longer ago than its key is remembered. The task keeps its history.
-- Locks only a row it frees; under READ COMMITTED the condition is checked on the newest row version.
UPDATE leasehold.tasks
   SET idempotency_key = NULL
 WHERE idempotency_key = $1
   AND (state = ANY (key_reuse_states)
        OR (key_retain_ms IS NOT NULL AND finalized_at IS NOT NULL
            AND extract(epoch FROM now() - finalized_at) * 1000 > key_retain_ms))
RETURNING id
