-- Whether anything is claimable in the queues ?1 (a JSON array): a read outside any write transaction,
-- so idle polling never takes the write lock.
SELECT EXISTS (
    SELECT 1 FROM leasehold_tasks, (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
     WHERE queue IN (SELECT value FROM json_each(?1))
       AND ((state = 'available' AND run_at <= n.ms) OR (state = 'running' AND lease_expires_at < n.ms))
)
