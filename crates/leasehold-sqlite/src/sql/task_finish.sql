-- Finish the task of the holder of token ?2 as ?3 ('cancelled' or 'discarded') with the reason ?4.
UPDATE leasehold_tasks
   SET state = ?3,
       errors = json_insert(errors, '$[#]', json_object('attempt', attempt, 'at', n.ms, 'message', ?4)),
       lease_expires_at = NULL,
       finalized_at = n.ms
  FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE id = CAST(?1 AS TEXT) AND fence = ?2 AND state = 'running'
