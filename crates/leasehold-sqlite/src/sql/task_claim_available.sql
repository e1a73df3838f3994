-- One branch of task_claim.sql's candidates: the due available tasks of one queue (its name is written
-- in by claim.rs as a constant), at most {limit}, in claim order.
SELECT * FROM (
        SELECT t.rowid AS rid, t.priority, t.run_at, t.id, 0 AS taken_over, 0 AS exhausted
          FROM leasehold_tasks AS t INDEXED BY leasehold_tasks_available_idx
         WHERE t.queue = {queue} AND t.state = 'available'
           AND t.run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)
         ORDER BY t.priority, t.run_at, t.id
         LIMIT {limit})
