-- Extend every lease that still carries its token by its own ttl from now (this server's clock).
-- $1 ids, $2 fences, $3 ttls in ms. Answers one status per lease: 'renewed'; 'busy' when another
-- transaction holds the row locked right now (the handler's own completion transaction, or a claim taking
-- over an expired lease), so that one slow transaction never stalls the renewal of every other lease;
-- 'lost' otherwise.
WITH h AS MATERIALIZED (
    SELECT *, 'running'::text AS running FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS h(id, fence, ttl_ms)
), free AS (
    SELECT t.id
      FROM leasehold.tasks AS t JOIN h ON t.id = h.id AND t.fence = h.fence
     WHERE t.state = h.running  -- by key: see task_complete.sql
       FOR UPDATE OF t SKIP LOCKED
), renewed AS (
    UPDATE leasehold.tasks AS t
       SET lease_expires_at = now() + h.ttl_ms * interval '1 millisecond'
      FROM h JOIN free ON free.id = h.id
     WHERE t.id = h.id AND t.fence = h.fence AND t.state = h.running
    RETURNING t.id, t.fence
)
SELECT h.id, h.fence,
       CASE
         WHEN r.id IS NOT NULL THEN 'renewed'
         WHEN EXISTS (SELECT 1 FROM leasehold.tasks AS t
                       WHERE t.id = h.id AND t.fence = h.fence AND t.state = h.running) THEN 'busy'
         ELSE 'lost'
       END AS status
  FROM h LEFT JOIN renewed AS r ON r.id = h.id AND r.fence = h.fence
