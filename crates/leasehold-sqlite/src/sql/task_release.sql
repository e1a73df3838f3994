-- Hand leases back at once. ?1 is a JSON array of [id, fence]; ?2 is 1 when the holder lost trust in its
-- lease (counted as a lease loss), 0 when it stopped before an outcome (the attempt is not counted).
-- `+t.state`: the unary plus keeps the test off the partial lease-expiry index (see tests/plans.rs).
-- Statistics taken while no task ran (an ANALYZE or `PRAGMA optimize` after a large enqueue) made that
-- index look nearly empty, and SQLite then read every running task and, for each, every task given.
UPDATE leasehold_tasks AS t
   SET state = 'available',
       run_at = n.ms,
       lease_expires_at = NULL,
       attempt = CASE WHEN ?2 THEN t.attempt ELSE t.attempt - 1 END,
       lease_losses = t.lease_losses + ?2
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence FROM jsonb_each(?1)) AS h,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = h.id AND t.fence = h.fence AND +t.state = 'running'
RETURNING id, fence, queue
