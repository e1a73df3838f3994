-- Inside the claiming transaction: discard expired tasks that have no attempt left (their holder kept
-- crashing or stalling). ?1 is a JSON array of ids; ?2 the error recorded.
UPDATE leasehold_tasks
   SET state = 'discarded',
       lease_expires_at = NULL,
       lease_losses = lease_losses + 1,
       errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', n.ms, 'message', ?2)),
       finalized_at = n.ms
  FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'running'
