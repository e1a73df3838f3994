-- Inside the claiming transaction: take the selected tasks, each with its token. ?1 is a JSON array of
-- the task ids, in the order of their tokens: the task at position k gets the token ?4 + k. ?5 is a JSON
-- array of those of them taken over from an expired lease (counted as a lease loss). ?2 is the default
-- lease ttl in ms, ?3 the worker id.
-- Flat arrays of strings, not an array of [id, fence, taken_over] arrays: SQLite hands each element of
-- json_each to the statement as text, so every `value ->> i` of a nested array rendered the element
-- and parsed it again (a third of the instructions of a drain went to that).
-- The answer's columns are decoded by position (rows.rs, ClaimRow): keep their order.
UPDATE leasehold_tasks AS t
   SET state = 'running',
       attempt = t.attempt + 1,
       fence = ?4 + c.key,
       lease_expires_at = n.ms + coalesce(t.lease_ttl_ms, ?2),
       claimed_by = ?3,
       lease_losses = t.lease_losses + (t.id IN (SELECT value FROM json_each(?5)))
  FROM json_each(?1) AS c,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
 WHERE t.id = c.value
RETURNING id, fence, kind, queue, payload, attempt, max_attempts,
          coalesce(lease_ttl_ms, ?2) AS lease_ttl_ms, run_at
