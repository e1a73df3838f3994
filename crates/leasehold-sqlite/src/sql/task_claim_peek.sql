-- Whether anything is claimable in the queues ?1 (a JSON array): a read outside any write transaction,
-- so idle polling never takes the write lock.
-- Each queue's available tasks are probed on their own along the available index, and the expired
-- leases along the lease-expiry index, as the claim reads them (INDEXED BY: whatever the statistics
-- say). One condition over the whole table let SQLite walk the available index from its first entry,
-- through every other queue's waiting tasks (3.3 ms a peek for an empty queue beside 20,000 waiting
-- tasks of another), and, once ANALYZE had run while tasks waited, read the whole table (3.5 ms a peek
-- over 20,000 finished tasks); each probe now reads a few index entries (about 10 us either way). A
-- queue's tasks that are not yet due and come first in the index's order (a higher priority, or run_at
-- later within one priority) are still stepped over one by one, as the claim's own reads do.
SELECT EXISTS (
           SELECT 1
             FROM json_each(?1) AS q
            WHERE EXISTS (SELECT 1 FROM leasehold_tasks AS t INDEXED BY leasehold_tasks_available_idx
                           WHERE t.queue = q.value AND t.state = 'available'
                             AND t.run_at <= CAST(unixepoch('subsec') * 1000 AS INTEGER)))
    OR EXISTS (
           SELECT 1
             FROM leasehold_tasks AS t INDEXED BY leasehold_tasks_lease_expiry_idx
            WHERE t.state = 'running' AND t.lease_expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
              AND t.queue IN (SELECT value FROM json_each(?1)))
