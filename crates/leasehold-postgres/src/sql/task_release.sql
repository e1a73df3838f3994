-- Hand leases back at once. $1 ids, $2 fences, $3 whether the holder lost trust in its lease (counted as a
-- lease loss) rather than stopping before an outcome (the attempt is not counted).
WITH h AS MATERIALIZED (
    SELECT *, 'running'::text AS running FROM unnest($1::uuid[], $2::bigint[]) AS h(id, fence)
)
UPDATE leasehold.tasks AS t
   SET state = 'available',
       run_at = now(),
       lease_expires_at = NULL,
       attempt = CASE WHEN $3 THEN t.attempt ELSE t.attempt - 1 END,
       lease_losses = t.lease_losses + $3::integer
  FROM h
 WHERE t.id = h.id AND t.fence = h.fence AND t.state = h.running  -- by key: see task_complete.sql
RETURNING t.id, t.fence, t.queue
