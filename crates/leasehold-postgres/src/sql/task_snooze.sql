-- Put the task of the holder of token $2 back to sleep for $3 ms; the attempt does not count.
UPDATE leasehold.tasks
   SET state = 'available',
       run_at = now() + $3::bigint * interval '1 millisecond',
       attempt = attempt - 1,
       lease_expires_at = NULL
 WHERE id = $1 AND fence = $2 AND state = (SELECT 'running'::text)  -- by key: see task_finish.sql
