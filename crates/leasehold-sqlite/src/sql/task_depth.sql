-- Tasks per queue in the states available and running.
SELECT queue, state, count(*) AS n
  FROM leasehold_tasks
 WHERE state IN ('available', 'running')
 GROUP BY queue, state
