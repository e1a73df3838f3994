SELECT outcome FROM leasehold_effects WHERE key = ?1
