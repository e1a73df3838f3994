-- Put the task of the holder of token ?2 back to sleep for ?3 ms; the attempt does not count.
UPDATE leasehold_tasks
   SET state = 'available', run_at = n.ms + ?3, attempt = attempt - 1, lease_expires_at = NULL
  FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE id = CAST(?1 AS TEXT) AND fence = ?2 AND state = 'running'
