-- Insert a batch of tasks that differ only in id and payload (the common batch: many jobs of one kind),
-- as task_insert.sql does, binding two arrays instead of nine. Wakes the workers waiting on the queue.
-- $1 ids, $2 payloads; $3 kind, $4 queue, $5 priority, $6 run_at (NULL = now), $7 delay in ms,
-- $8 max attempts, $9 lease ttl in ms (NULL = the worker's default)
WITH inserted AS (
    INSERT INTO leasehold.tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms)
    SELECT t.id, $3, $4, t.payload, $5, coalesce($6, now()) + $7 * interval '1 millisecond', $8, $9
      FROM unnest($1::uuid[], $2::jsonb[]) AS t(id, payload)
    RETURNING queue, run_at
)
SELECT pg_notify('leasehold_available', q.queue)
  FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS q
 WHERE EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = q.queue AND w.until > now())
