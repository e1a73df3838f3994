-- Whether the lease ?1, ?2 is the task's current one: the task runs under that very token. (`CAST`: see
-- tests/plans.rs; `+state` keeps the test off the partial lease-expiry index.)
SELECT EXISTS (SELECT 1 FROM leasehold_tasks WHERE id = CAST(?1 AS TEXT) AND fence = ?2 AND +state = 'running')
