-- Complete tasks without a result, each fenced by its token. ?1 is a JSON array of strings "id:fence"
-- (an id is 36 characters): one flat array of strings, which json_each hands over as they are, where
-- the elements of a nested array would each be rendered as text and parsed again (task_complete.sql
-- takes the tasks that carry a result).
-- `+t.state`: the unary plus keeps the test off the partial lease-expiry index (see tests/plans.rs).
-- Statistics taken while no task ran (an ANALYZE or `PRAGMA optimize` after a large enqueue) made that
-- index look nearly empty, and SQLite then read every running task and, for each, every task given.
UPDATE leasehold_tasks AS t
   SET state = 'completed', result = NULL, lease_expires_at = NULL, finalized_at = n.ms
  FROM json_each(?1) AS h,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = substr(h.value, 1, 36) AND t.fence = CAST(substr(h.value, 38) AS INTEGER) AND +t.state = 'running'
RETURNING id, fence
