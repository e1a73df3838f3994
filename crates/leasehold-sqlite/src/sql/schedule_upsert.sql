-- Write a schedule's definition. A new schedule starts from now (no backfill); a changed one keeps its
-- progress, so the new expression or policy applies from the next tick.
INSERT INTO leasehold_schedules (name, definition, fingerprint, last_tick)
VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))
ON CONFLICT (name) DO UPDATE
   SET definition = excluded.definition, fingerprint = excluded.fingerprint,
       updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
 WHERE leasehold_schedules.fingerprint <> excluded.fingerprint
