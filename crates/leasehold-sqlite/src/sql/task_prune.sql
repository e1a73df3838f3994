-- Delete up to ?2 tasks that finished more than ?1 ms ago. A task whose idempotency key is still
-- remembered stays until its key's retention ends too (a key kept forever keeps its task).
DELETE FROM leasehold_tasks
 WHERE id IN (
        SELECT id
          FROM leasehold_tasks, (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
         WHERE finalized_at IS NOT NULL
           AND finalized_at < n.ms - ?1
           AND state IN ('completed', 'cancelled', 'discarded')
           AND (idempotency_key IS NULL OR (key_retain_ms IS NOT NULL AND finalized_at < n.ms - key_retain_ms))
         ORDER BY finalized_at
         LIMIT ?2
       )
