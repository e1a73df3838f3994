-- Claim an effect key in the caller's (BEGIN IMMEDIATE) transaction for the lease ?2, ?3 (both NULL: no
-- task's lease): only while the lease is the task's current one (the task runs under that very token),
-- which holds until the transaction ends, since it holds the file's write lock. No row: the key was
-- recorded already, or the lease is lost (effect_holder.sql tells which).
-- (`WHERE` is required where an upsert's values come from a SELECT. `CAST`: see tests/plans.rs; `+state`
-- keeps the test off the partial lease-expiry index.)
INSERT INTO leasehold_effects (key, task_id, fence)
SELECT ?1, ?2, ?3
 WHERE ?2 IS NULL
    OR EXISTS (SELECT 1 FROM leasehold_tasks WHERE id = CAST(?2 AS TEXT) AND fence = ?3 AND +state = 'running')
ON CONFLICT (key) DO NOTHING
RETURNING key
