-- Complete tasks, each fenced by its token. $1 ids, $2 fences, $3 results.
-- Answers one status per input row, in input order: 'completed'; 'already_completed' when the handler
-- completed it under the same token inside its own transaction; 'lease_lost' otherwise.
-- `(t.state = 'running') IS TRUE` rather than `t.state = 'running'`: the same test, in a form the planner
-- does not match to the partial index of running tasks, so that the tasks are looked up by key. With the
-- plain form, the generic plan PostgreSQL keeps for a prepared statement (it guesses 10 rows for the
-- arrays) scans every running task once per task given: 8.8 ms instead of 0.9 ms for 100 completions
-- with 400 tasks running.
WITH h AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::jsonb[]) WITH ORDINALITY AS h(id, fence, result, ord)
), done AS (
    UPDATE leasehold.tasks AS t
       SET state = 'completed', result = h.result, lease_expires_at = NULL, finalized_at = now()
      FROM h
     WHERE t.id = h.id AND t.fence = h.fence AND (t.state = 'running') IS TRUE
    RETURNING t.id, t.fence
)
SELECT CASE
         WHEN d.id IS NOT NULL THEN 'completed'
         WHEN EXISTS (SELECT 1 FROM leasehold.tasks AS t
                       WHERE t.id = h.id AND t.fence = h.fence AND t.state = 'completed') THEN 'already_completed'
         ELSE 'lease_lost'
       END AS status
  FROM h LEFT JOIN done AS d ON d.id = h.id AND d.fence = h.fence
 ORDER BY h.ord
