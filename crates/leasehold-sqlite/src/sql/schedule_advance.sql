-- A schedule's progress after a recorded tick. ?1 name, ?2 last tick at least, ?3 the new run's task (or
-- NULL), ?4 buffer change ('keep', 'set', 'clear'), ?5 the buffered tick when set, ?6 the trigger handled
-- (cleared only if no newer trigger came meanwhile).
UPDATE leasehold_schedules
   SET last_tick = max(coalesce(last_tick, ?2), ?2),
       last_task = coalesce(?3, last_task),
       buffered_tick = CASE ?4 WHEN 'keep' THEN buffered_tick WHEN 'set' THEN ?5 ELSE NULL END,
       trigger_at = CASE WHEN ?6 IS NOT NULL AND trigger_at <= ?6 THEN NULL ELSE trigger_at END
 WHERE name = CAST(?1 AS TEXT)
