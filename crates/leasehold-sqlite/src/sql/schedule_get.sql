SELECT name, definition, paused, last_tick, last_task, buffered_tick, trigger_at, removed
  FROM leasehold_schedules
 WHERE ?1 IS NULL OR name = CAST(?1 AS TEXT)
 ORDER BY name
