-- Store the outcome of an effect this transaction claimed (and that has none yet).
UPDATE leasehold_effects SET outcome = ?2, recorded_at = CAST(unixepoch('subsec') * 1000 AS INTEGER)
 WHERE key = CAST(?1 AS TEXT) AND outcome IS NULL
