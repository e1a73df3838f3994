-- Insert one task holding the idempotency key $10, unless a task that still counts holds it.
-- $1..$9 as in task_insert.sql (single values); $10 the key; $11 the final states after which the key
-- may be reused; $12 how long (ms) it is remembered after its task finished (NULL: forever).
-- The rules that free a key are the holder's own, checked on the conflicting row itself (never through
-- another snapshot), so concurrent enqueues of one key cannot both insert.
-- Answers the new row's id ($1); or the old holder's id when this statement freed the key from it (the
-- caller then inserts again); or no row when a task that counts holds the key.
INSERT INTO leasehold.tasks AS t (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms,
                                  idempotency_key, key_reuse_states, key_retain_ms)
VALUES ($1, $2, $3, $4, $5, coalesce($6, now()) + $7 * interval '1 millisecond', $8, $9, $10, $11, $12)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL
DO UPDATE SET idempotency_key = NULL
 WHERE t.state = ANY (t.key_reuse_states)
    OR (t.key_retain_ms IS NOT NULL AND t.finalized_at < now() - t.key_retain_ms * interval '1 millisecond')
RETURNING t.id
