-- Claim an effect key in the caller's (BEGIN IMMEDIATE) transaction; no row when it was recorded already.
INSERT INTO leasehold_effects (key, task_id, fence) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO NOTHING
RETURNING key
