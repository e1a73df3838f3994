-- Store the outcome of an effect whose key this transaction claimed.
UPDATE leasehold_effects SET outcome = ?2, recorded_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) WHERE key = ?1
