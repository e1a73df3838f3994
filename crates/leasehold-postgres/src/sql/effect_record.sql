-- Store the outcome of an effect whose key this transaction claimed.
UPDATE leasehold.effects SET outcome = $2, recorded_at = now() WHERE key = $1
