UPDATE jobs SET state = 1, attempt = attempt + 1,
       lease_expires_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) + 30000
 WHERE id IN (SELECT id FROM jobs
               WHERE state = 0 AND run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)
               ORDER BY run_at, id LIMIT 100)
RETURNING id
