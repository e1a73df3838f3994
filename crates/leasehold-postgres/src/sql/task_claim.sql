-- Claim up to $2 tasks from the queues $1: due available tasks, and running tasks whose lease expired on
-- this server's clock (a crashed or paused holder). Every claimed task gets a new fencing token.
-- $3 default lease ttl in ms, $4 worker id.
WITH available AS (
    SELECT id, priority, run_at, false AS taken_over
      FROM leasehold.tasks
     WHERE state = 'available' AND queue = ANY($1) AND run_at <= now()
     ORDER BY priority, run_at, id
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, priority, run_at, true AS taken_over
      FROM leasehold.tasks
     WHERE state = 'running' AND lease_expires_at < now() AND queue = ANY($1)
     ORDER BY lease_expires_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, taken_over
      FROM (SELECT * FROM available UNION ALL SELECT * FROM expired) AS c
     ORDER BY priority, run_at, id
     LIMIT $2
)
UPDATE leasehold.tasks AS t
   SET state = 'running',
       attempt = t.attempt + 1,
       fence = nextval('leasehold.fence_seq'),
       lease_expires_at = now() + coalesce(t.lease_ttl_ms, $3) * interval '1 millisecond',
       claimed_by = $4,
       lease_losses = t.lease_losses + picked.taken_over::integer
  FROM picked
 WHERE t.id = picked.id
RETURNING t.id, t.fence, t.kind, t.queue, t.payload, t.attempt, t.max_attempts,
          coalesce(t.lease_ttl_ms, $3)::bigint AS lease_ttl_ms, t.run_at, picked.taken_over
