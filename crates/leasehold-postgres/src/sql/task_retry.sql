-- Record a failed attempt of the holder of token $2. $3 the error, $4 the delay in ms before the next
-- attempt, NULL to discard the task.
UPDATE leasehold.tasks
   SET state = CASE WHEN $4::bigint IS NULL THEN 'discarded' ELSE 'available' END,
       run_at = CASE WHEN $4::bigint IS NULL THEN run_at ELSE now() + $4::bigint * interval '1 millisecond' END,
       errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'message', $3::text)),
       lease_expires_at = NULL,
       finalized_at = CASE WHEN $4::bigint IS NULL THEN now() END
 WHERE id = $1 AND fence = $2 AND state = (SELECT 'running'::text)  -- by key: see task_finish.sql
RETURNING state
