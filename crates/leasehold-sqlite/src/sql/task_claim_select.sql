-- Inside BEGIN IMMEDIATE: the tasks to claim from the queues ?1 (a JSON array), at most ?2: due available
-- tasks, and running tasks whose lease expired on SQLite's clock ('exhausted' when such a task has no
-- attempt left).
SELECT id, state = 'running' AS taken_over, state = 'running' AND attempt >= max_attempts AS exhausted
  FROM leasehold_tasks, (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE queue IN (SELECT value FROM json_each(?1))
   AND ((state = 'available' AND run_at <= n.ms) OR (state = 'running' AND lease_expires_at < n.ms))
 ORDER BY priority, run_at, id
 LIMIT ?2
