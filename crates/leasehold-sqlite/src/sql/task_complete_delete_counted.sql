-- The deleting batch's completion: task_complete_delete.sql without its rows. ?1 is the same JSON array
-- of strings "id:fence". The caller compares the count of rows deleted with the tasks given: when every
-- task was deleted, that count says so for all of them; when it falls short (a lease lost, a task
-- completed already, a keyed task, which this statement leaves to the updates), the caller rolls the
-- statement back and writes the batch with the statements that answer per task
-- (task_complete_counted.sql does the same for a batch that keeps its tasks).
DELETE FROM leasehold_tasks
 WHERE rowid IN (SELECT t.rowid
                   FROM json_each(?1) AS h
                   JOIN leasehold_tasks AS t
                     ON t.id = substr(h.value, 1, 36) AND t.fence = CAST(substr(h.value, 38) AS INTEGER)
                  WHERE +t.state = 'running' AND t.idempotency_key IS NULL)
