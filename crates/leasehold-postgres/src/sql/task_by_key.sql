-- The task holding an idempotency key $1 (or, first, the task $4 itself when it was sent again), and
-- whether it is the same job as ($2 kind, $3 payload), compared as JSON values by the database.
SELECT id, (kind = $2 AND payload = $3::jsonb) AS same_job, state, result
  FROM leasehold.tasks
 WHERE id = $4 OR idempotency_key = $1
 ORDER BY (id = $4) DESC
 LIMIT 1
