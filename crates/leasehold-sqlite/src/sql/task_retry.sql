-- Record a failed attempt of the holder of token ?2. ?3 the error, ?4 the delay in ms before the next
-- attempt, NULL to discard the task.
UPDATE leasehold_tasks
   SET state = CASE WHEN ?4 IS NULL THEN 'discarded' ELSE 'available' END,
       run_at = CASE WHEN ?4 IS NULL THEN run_at ELSE n.ms + ?4 END,
       errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', n.ms, 'message', ?3)),
       lease_expires_at = NULL,
       finalized_at = CASE WHEN ?4 IS NULL THEN n.ms END
  FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE id = CAST(?1 AS TEXT) AND fence = ?2 AND state = 'running'
RETURNING state
