-- Finish the task of the holder of token $2 as $3 ('cancelled' or 'discarded') with the reason $4.
UPDATE leasehold.tasks
   SET state = $3,
       errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'message', $4::text)),
       lease_expires_at = NULL,
       finalized_at = now()
 WHERE id = $1 AND fence = $2 AND state = 'running'
