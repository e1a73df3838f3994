-- Delete up to $2 tasks that finished more than $1 ms ago. A task whose idempotency key is still
-- remembered stays until its key's retention ends too (a key kept forever keeps its task). Rows another
-- pruner is deleting are skipped.
-- The deletion reaches the row versions it locked where they lie, as the claim's update does (see
-- task_claim.sql, also for the rows such a read leaves alone): planned for a batch of 1,000 as
-- `id IN (...)`, it hashed a sequential scan of a table of 50,000 tasks.
DELETE FROM leasehold.tasks
 WHERE ctid = ANY(ARRAY(
        SELECT ctid
          FROM leasehold.tasks
         WHERE finalized_at IS NOT NULL
           AND finalized_at < now() - $1 * interval '1 millisecond'
           AND state IN ('completed', 'cancelled', 'discarded')
           AND (idempotency_key IS NULL
                OR (key_retain_ms IS NOT NULL AND finalized_at < now() - key_retain_ms * interval '1 millisecond'))
         ORDER BY finalized_at
         LIMIT $2
           FOR UPDATE SKIP LOCKED
       ))
