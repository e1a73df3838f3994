-- Write a schedule's definition. A new schedule starts from now (no backfill); a changed one keeps its
-- progress, so the new expression or policy applies from the next tick; one added back after its
-- removal starts from now.
INSERT INTO leasehold_schedules (name, definition, fingerprint, last_tick)
VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))
ON CONFLICT (name) DO UPDATE
   SET definition = excluded.definition, fingerprint = excluded.fingerprint,
       updated_at = CAST(unixepoch('subsec') * 1000 AS INTEGER),
       -- a schedule added back after its removal starts afresh from now, like a new one
       last_tick = CASE WHEN leasehold_schedules.removed
                        THEN max(leasehold_schedules.last_tick, CAST(unixepoch('subsec') * 1000 AS INTEGER))
                        ELSE leasehold_schedules.last_tick END,
       buffered_tick = CASE WHEN leasehold_schedules.removed THEN NULL ELSE leasehold_schedules.buffered_tick END,
       trigger_at = CASE WHEN leasehold_schedules.removed THEN NULL ELSE leasehold_schedules.trigger_at END,
       removed = 0
 WHERE leasehold_schedules.fingerprint <> excluded.fingerprint OR leasehold_schedules.removed
