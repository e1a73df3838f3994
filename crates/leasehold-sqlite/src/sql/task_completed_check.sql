-- Of the [id, fence] pairs in ?1, the ones already completed under that very token (by the handler's own
-- transaction).
SELECT t.id, t.fence
  FROM leasehold_tasks AS t
  JOIN (SELECT value ->> 0 AS id, value ->> 1 AS fence FROM jsonb_each(?1)) AS h ON t.id = h.id AND t.fence = h.fence
 WHERE t.state = 'completed'
