-- Store the outcome of an effect this transaction claimed (and that has none yet).
UPDATE leasehold.effects SET outcome = $2, recorded_at = now() WHERE key = $1 AND outcome IS NULL
