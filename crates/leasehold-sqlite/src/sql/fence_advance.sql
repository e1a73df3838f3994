-- Inside the claiming transaction, after task_claim_update_plain.sql or task_claim_update.sql: move the token counter past the ?1 ranks
-- the claim used.
UPDATE leasehold_fence SET value = value + ?1 WHERE id = 1
