-- Inside BEGIN IMMEDIATE: running tasks of the queues ?1 (a JSON array) whose lease expired on SQLite's
-- clock, at most ?2, oldest expiry first; 'exhausted' when such a task has no attempt left.
SELECT id, priority, run_at, attempt >= max_attempts AS exhausted
  FROM leasehold_tasks INDEXED BY leasehold_tasks_lease_expiry_idx
 WHERE state = 'running' AND lease_expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
   AND queue IN (SELECT value FROM json_each(?1))
 ORDER BY lease_expires_at
 LIMIT ?2
