-- Complete tasks by deleting them, each fenced by its token (TaskCompleteParams::delete_completed).
-- ?1 is a JSON array of strings "id:fence", as in task_complete_plain.sql. A task with an idempotency key
-- is left alone here: the caller completes it as usual, so that the key still finds it.
-- Answers the deleted tasks.
DELETE FROM leasehold_tasks
 WHERE rowid IN (SELECT t.rowid
                   FROM json_each(?1) AS h
                   JOIN leasehold_tasks AS t
                     ON t.id = substr(h.value, 1, 36) AND t.fence = CAST(substr(h.value, 38) AS INTEGER)
                  WHERE t.state = 'running' AND t.idempotency_key IS NULL)
RETURNING id, fence
