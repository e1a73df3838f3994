-- Claim an effect key in the caller's transaction; no row when the effect was recorded already (a
-- concurrent claim of the same key waits here for the other transaction to end).
INSERT INTO leasehold.effects (key, task_id, fence) VALUES ($1, $2, $3)
ON CONFLICT (key) DO NOTHING
RETURNING key
