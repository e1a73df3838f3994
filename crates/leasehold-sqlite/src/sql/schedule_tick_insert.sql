-- The ledger row of one tick. A tick recorded already stays as it is, except a buffered tick, which
-- becomes the run it was held for (and only a run). Answers a row when this statement wrote.
INSERT INTO leasehold_schedule_ticks (schedule, tick, manual, outcome, task_id, leader_token)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (schedule, tick, manual) DO UPDATE
   SET outcome = excluded.outcome, task_id = excluded.task_id, leader_token = excluded.leader_token,
       recorded_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
 WHERE leasehold_schedule_ticks.outcome = 'buffered' AND excluded.outcome IN ('enqueued', 'caught_up', 'triggered')
RETURNING 1
