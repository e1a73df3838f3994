-- Write a schedule's definition. A new schedule starts from now (no backfill); a changed one keeps its
-- progress, so the new expression or policy applies from the next tick.
INSERT INTO leasehold.schedules (name, definition, fingerprint, last_tick)
VALUES ($1, $2, $3, now())
ON CONFLICT (name) DO UPDATE
   SET definition = EXCLUDED.definition, fingerprint = EXCLUDED.fingerprint, updated_at = now()
 WHERE schedules.fingerprint <> EXCLUDED.fingerprint
