-- Inside BEGIN IMMEDIATE: due available tasks of the queue ?1, at most ?2, in claim order. One queue per
-- statement, so the read follows the available index (queue, priority, run_at, id) and touches about ?2
-- entries however long the backlog.
SELECT id, priority, run_at
  FROM leasehold_tasks INDEXED BY leasehold_tasks_available_idx
 WHERE queue = ?1 AND state = 'available' AND run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)
 ORDER BY priority, run_at, id
 LIMIT ?2
