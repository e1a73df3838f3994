-- Whether the lease ?1, ?2 is the task's current one: the task runs under that very token.
SELECT EXISTS (SELECT 1 FROM leasehold_tasks WHERE id = ?1 AND fence = ?2 AND state = 'running')
