-- Inside the claiming transaction: reserve ?1 tokens; answers the last one.
UPDATE leasehold_fence SET value = value + ?1 WHERE id = 1 RETURNING value
