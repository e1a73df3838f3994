-- Complete tasks by deleting them, each fenced by its token (TaskCompleteParams::delete_completed).
-- ?1 is a JSON array of strings "id:fence", as in task_complete_plain.sql. A task with an idempotency key
-- is left alone here: the caller completes it as usual, so that the key still finds it.
-- Answers the deleted tasks.
-- `+t.state`: the unary plus keeps the test off the partial lease-expiry index (see tests/plans.rs).
-- Statistics taken while no task ran (an ANALYZE or `PRAGMA optimize` after a large enqueue) made that
-- index look nearly empty, and SQLite then read every running task and, for each, every task given.
DELETE FROM leasehold_tasks
 WHERE rowid IN (SELECT t.rowid
                   FROM json_each(?1) AS h
                   JOIN leasehold_tasks AS t
                     ON t.id = substr(h.value, 1, 36) AND t.fence = CAST(substr(h.value, 38) AS INTEGER)
                  WHERE +t.state = 'running' AND t.idempotency_key IS NULL)
RETURNING id, fence
