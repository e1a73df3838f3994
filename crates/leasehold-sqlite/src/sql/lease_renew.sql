-- Extend every lease that still carries its token by its own ttl from now (SQLite's clock).
-- ?1 is a JSON array of [id, fence, ttl_ms]. A lease missing from the answer is lost.
-- `+t.state`: the unary plus keeps the test off the partial lease-expiry index (see tests/plans.rs).
-- Statistics taken while no task ran (an ANALYZE or `PRAGMA optimize` after a large enqueue) made that
-- index look nearly empty, and SQLite then read every running task and, for each, every task given.
UPDATE leasehold_tasks AS t
   SET lease_expires_at = n.ms + h.ttl_ms
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, value ->> 2 AS ttl_ms FROM jsonb_each(?1)) AS h,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = h.id AND t.fence = h.fence AND +t.state = 'running'
RETURNING id, fence
