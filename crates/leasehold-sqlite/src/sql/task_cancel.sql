-- Cancel a task that has not finished, whoever holds it. Its holder finds out at its next renewal.
UPDATE leasehold_tasks
   SET state = 'cancelled', lease_expires_at = NULL, finalized_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
 WHERE id = CAST(?1 AS TEXT) AND state IN ('available', 'running')
RETURNING state
