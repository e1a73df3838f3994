-- Finish the task of the holder of token $2 as $3 ('cancelled' or 'discarded') with the reason $4.
-- The state is compared with a subquery's value, not the literal 'running': PostgreSQL cannot then match
-- the test to the partial index of running tasks, and looks the task up by its key. With the literal, a
-- table analyzed while no task ran (just after a large enqueue) made it read every running task's entry
-- in that index instead (the same holds for task_retry.sql and task_snooze.sql).
UPDATE leasehold.tasks
   SET state = $3,
       errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'message', $4::text)),
       lease_expires_at = NULL,
       finalized_at = now()
 WHERE id = $1 AND fence = $2 AND state = (SELECT 'running'::text)
