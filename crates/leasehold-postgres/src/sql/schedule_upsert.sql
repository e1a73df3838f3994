-- Write a schedule's definition. A new schedule starts from now (no backfill); a changed one keeps its
-- progress, so the new expression or policy applies from the next tick; one added back after its
-- removal starts from now.
INSERT INTO leasehold.schedules (name, definition, fingerprint, last_tick)
VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
   SET definition = EXCLUDED.definition, fingerprint = EXCLUDED.fingerprint, updated_at = now(),
       -- a schedule added back after its removal starts afresh from now, like a new one
       last_tick = CASE WHEN schedules.removed THEN greatest(schedules.last_tick, now()) ELSE schedules.last_tick END,
       buffered_tick = CASE WHEN schedules.removed THEN NULL ELSE schedules.buffered_tick END,
       trigger_at = CASE WHEN schedules.removed THEN NULL ELSE schedules.trigger_at END,
       removed = false
 WHERE schedules.fingerprint <> EXCLUDED.fingerprint OR schedules.removed
