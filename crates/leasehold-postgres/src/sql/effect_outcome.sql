SELECT outcome FROM leasehold.effects WHERE key = $1
