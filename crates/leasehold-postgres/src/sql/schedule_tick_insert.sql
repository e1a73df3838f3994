-- The ledger row of one tick. A tick recorded already stays as it is, except a buffered tick, which
-- becomes the run it was held for (and only a run). Answers a row when this statement wrote.
INSERT INTO leasehold.schedule_ticks (schedule, tick, manual, outcome, task_id, leader_token)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (schedule, tick, manual) DO UPDATE
   SET outcome = EXCLUDED.outcome, task_id = EXCLUDED.task_id, leader_token = EXCLUDED.leader_token, recorded_at = now()
 WHERE schedule_ticks.outcome = 'buffered' AND EXCLUDED.outcome IN ('enqueued', 'caught_up', 'triggered')
RETURNING true
