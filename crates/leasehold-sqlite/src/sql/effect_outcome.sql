SELECT outcome FROM leasehold_effects WHERE key = CAST(?1 AS TEXT)
