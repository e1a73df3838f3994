-- Insert one task, as task_insert.sql does for a batch, with single values instead of arrays (cheaper
-- to bind and to plan for the most common enqueue). Wakes the workers waiting on its queue, and answers
-- whether any waits (the store then chooses task_insert_handoff.sql for the next enqueue into it).
-- $1 id, $2 payload; $3 kind, $4 queue, $5 priority, $6 run_at (NULL = now), $7 delay in ms,
-- $8 max attempts, $9 lease ttl in ms (NULL = the worker's default): $3 to $9 as in task_insert_alike.sql
WITH inserted AS (
    INSERT INTO leasehold.tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms)
    VALUES ($1, $3, $4, $2, $5, coalesce($6, now()) + $7 * interval '1 millisecond', $8, $9)
    RETURNING queue, run_at
), told AS (
    SELECT i.queue, i.run_at,
           EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = i.queue AND w.until > now()) AS waits
      FROM inserted AS i
)
SELECT t.waits, CASE WHEN t.waits AND t.run_at <= now() THEN pg_notify('leasehold_available', t.queue) END
  FROM told AS t
