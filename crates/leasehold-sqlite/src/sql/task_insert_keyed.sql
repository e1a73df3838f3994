-- Insert one task holding the idempotency key ?10, if no task holds it. ?1 id, ?2 payload (JSON text),
-- ?3 kind, ?4 queue, ?5 priority, ?6 run_at ms (NULL = now), ?7 delay ms, ?8 max attempts, ?9 lease ttl
-- ms (?3 to ?9 as store.rs's TaskColumns binds them); ?10 the key; ?11 the final states (a JSON array)
-- after which the key may be reused; ?12 how long (ms) it is remembered after its task finished (NULL:
-- forever). No row: a task holds the key, or this very task exists already (the same task sent again).
INSERT INTO leasehold_tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms,
                             created_at, idempotency_key, key_reuse_states, key_retain_ms)
SELECT ?1, ?3, ?4, json(?2), ?5, coalesce(?6, n.ms) + ?7, ?8, ?9, n.ms, ?10, ?11, ?12
  FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE true
ON CONFLICT DO NOTHING
RETURNING id
