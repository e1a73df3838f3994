-- Insert one task holding the idempotency key $10, if no task holds it. $1..$9 as in task_insert_one.sql;
-- $10 the key; $11 the final states after which the key may be reused; $12 how long (ms) it is remembered
-- after its task finished (NULL: forever). No row: a task holds the key (an insert of the same key in
-- flight elsewhere is waited for), or this very task exists already (the same task sent again). Locks
-- nothing once it returns. A task inserted due now wakes the workers waiting on its queue.
WITH inserted AS (
    INSERT INTO leasehold.tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms,
                                 idempotency_key, key_reuse_states, key_retain_ms)
    VALUES ($1, $3, $4, $2, $5, coalesce($6, now()) + $7 * interval '1 millisecond', $8, $9, $10, $11, $12)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, run_at
)
SELECT i.id,
       CASE WHEN i.run_at <= now()
                 AND EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = i.queue AND w.until > now())
            THEN pg_notify('leasehold_available', i.queue)::text END AS woken
  FROM inserted AS i
