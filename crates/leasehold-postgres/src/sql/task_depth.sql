-- Tasks per queue in the states that the partial indexes cover (available, running).
SELECT queue, state, count(*) AS n
  FROM leasehold.tasks
 WHERE state IN ('available', 'running')
 GROUP BY queue, state
