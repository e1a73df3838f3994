-- Complete tasks, each fenced by its token, deleting those without an idempotency key instead of
-- keeping them (TaskCompleteParams::delete_completed). $1 ids, $2 fences, $3 results.
-- Answers what task_complete.sql answers: one row holding an array of one status per input row, in
-- input order: 0 completed (deleted, or kept as completed if keyed); 1 already completed under the same
-- token (by the handler's own transaction, which keeps the row); 2 lease lost, or nothing left to tell.
-- A delete writes no new row version and no index entry, where the update writes a version and an
-- entry in the primary key and in the index of finished tasks; a task whose key is remembered is
-- updated as task_complete.sql does, so that the key still finds it.
-- The update runs only when the delete left some of the tasks given (a plan's one-time filter): in the
-- common batch, all unkeyed and all still held, it would look every task up again for nothing.
-- `t.state = h.running`: see task_complete.sql. Keyed and unkeyed tasks are told apart the same way,
-- against `h.unkeyed` (always true): as a filter on the table, `t.idempotency_key IS NOT NULL` matches
-- the partial index of keys, and the planner then read every keyed task for each completion.
WITH h AS MATERIALIZED (
    SELECT *, 'running'::text AS running, true AS unkeyed
      FROM unnest($1::uuid[], $2::bigint[], $3::jsonb[]) WITH ORDINALITY AS h(id, fence, result, ord)
), deleted AS (
    DELETE FROM leasehold.tasks AS t
     USING h
     WHERE t.id = h.id AND t.fence = h.fence AND t.state = h.running AND (t.idempotency_key IS NULL) = h.unkeyed
    RETURNING t.id, t.fence
), kept AS (
    UPDATE leasehold.tasks AS t
       SET state = 'completed', result = h.result, lease_expires_at = NULL, finalized_at = now()
      FROM h
     WHERE t.id = h.id AND t.fence = h.fence AND t.state = h.running AND (t.idempotency_key IS NULL) <> h.unkeyed
       AND (SELECT count(*) FROM deleted) < (SELECT count(*) FROM h)
    RETURNING t.id, t.fence
), done AS (
    SELECT id, fence FROM deleted UNION ALL SELECT id, fence FROM kept
)
SELECT array_agg(CASE
                   WHEN d.id IS NOT NULL THEN 0
                   WHEN EXISTS (SELECT 1 FROM leasehold.tasks AS t
                                 WHERE t.id = h.id AND t.fence = h.fence AND t.state = 'completed') THEN 1
                   ELSE 2
                 END::smallint ORDER BY h.ord) AS statuses
  FROM h LEFT JOIN done AS d ON d.id = h.id AND d.fence = h.fence
