-- Insert tasks given as parallel arrays (a whole batch in one statement), and wake the workers waiting on
-- their queues: one notification per queue with tasks due now that a worker announced it waits for (see
-- the migration wakeups_on_demand). PostgreSQL delivers it on commit, so a rolled-back enqueue wakes
-- nobody.
-- $1 ids, $2 kinds, $3 queues, $4 payloads, $5 priorities, $6 run_at (NULL = now),
-- $7 delays in ms, $8 max attempts, $9 lease ttls in ms (NULL = the worker's default)
WITH inserted AS (
    INSERT INTO leasehold.tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms)
    SELECT t.id, t.kind, t.queue, t.payload, t.priority,
           coalesce(t.run_at, now()) + t.delay_ms * interval '1 millisecond',
           t.max_attempts, t.lease_ttl_ms
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::smallint[], $6::timestamptz[],
                  $7::bigint[], $8::integer[], $9::integer[])
           AS t(id, kind, queue, payload, priority, run_at, delay_ms, max_attempts, lease_ttl_ms)
    RETURNING queue, run_at
)
SELECT pg_notify('leasehold_available', q.queue)
  FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS q
 WHERE EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = q.queue AND w.until > now())
