-- Complete tasks, each fenced by its token. $1 ids, $2 fences, $3 results.
-- Answers one status per input row, in input order: 'completed'; 'already_completed' when the handler
-- completed it under the same token inside its own transaction; 'lease_lost' otherwise.
WITH h AS (
    SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::jsonb[]) WITH ORDINALITY AS h(id, fence, result, ord)
), done AS (
    UPDATE leasehold.tasks AS t
       SET state = 'completed', result = h.result, lease_expires_at = NULL, finalized_at = now()
      FROM h
     WHERE t.id = h.id AND t.fence = h.fence AND t.state = 'running'
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
