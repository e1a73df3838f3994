-- Inside the claiming transaction: take the selected tasks, each with its token. ?1 is a JSON array of
-- [id, fence, taken_over]; ?2 the default lease ttl in ms; ?3 the worker id.
UPDATE leasehold_tasks AS t
   SET state = 'running',
       attempt = t.attempt + 1,
       fence = c.fence,
       lease_expires_at = n.ms + coalesce(t.lease_ttl_ms, ?2),
       claimed_by = ?3,
       lease_losses = t.lease_losses + c.taken_over
  FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, value ->> 2 AS taken_over FROM json_each(?1)) AS c,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = c.id
RETURNING id, fence, kind, queue, payload, attempt, max_attempts,
          coalesce(lease_ttl_ms, ?2) AS lease_ttl_ms, run_at
