SELECT id, kind, queue, payload, state, priority, run_at, attempt, max_attempts, fence, lease_expires_at, idempotency_key,
       claimed_by, lease_losses, errors, result, created_at, finalized_at
  FROM leasehold_tasks
 WHERE id = CAST(?1 AS TEXT)
