-- The task holding an idempotency key.
SELECT id, kind, payload, state, result FROM leasehold.tasks WHERE idempotency_key = $1
