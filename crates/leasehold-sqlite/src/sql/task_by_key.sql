-- The task holding an idempotency key ?1 (or, first, the task ?2 itself when it was sent again).
SELECT id, kind, payload, state, result
  FROM leasehold_tasks
 WHERE id = CAST(?2 AS TEXT) OR idempotency_key = CAST(?1 AS TEXT)
 ORDER BY (id = CAST(?2 AS TEXT)) DESC
 LIMIT 1
