-- The common batch's completion: task_complete_plain.sql without its rows. ?1 is the same JSON array of
-- strings "id:fence". The caller compares the count of rows changed with the tasks given: when every
-- task was completed, that count says so for all of them, and no row per task is read back (sqlx copies
-- every value of every row, on the connection's thread, under SQLite's memory lock); when it falls
-- short, the caller rolls the statement back and writes the batch with the statements that answer per
-- task.
UPDATE leasehold_tasks AS t
   SET state = 'completed', result = NULL, lease_expires_at = NULL, finalized_at = n.ms
  FROM json_each(?1) AS h,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = substr(h.value, 1, 36) AND t.fence = CAST(substr(h.value, 38) AS INTEGER) AND +t.state = 'running'
