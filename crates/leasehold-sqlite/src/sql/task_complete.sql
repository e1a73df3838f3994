-- Complete tasks, each fenced by its token. ?1 is a JSON array of [id, fence, has_result, result].
-- `+t.state`: the unary plus keeps the test off the partial lease-expiry index (see tests/plans.rs).
-- Statistics taken while no task ran (an ANALYZE or `PRAGMA optimize` after a large enqueue) made that
-- index look nearly empty, and SQLite then read every running task and, for each, every task given.
UPDATE leasehold_tasks AS t
   SET state = 'completed', result = h.result, lease_expires_at = NULL, finalized_at = n.ms
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, CASE WHEN value ->> 2 THEN json(value -> 3) END AS result FROM jsonb_each(?1)) AS h,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = h.id AND t.fence = h.fence AND +t.state = 'running'
RETURNING id, fence
