-- Extend every lease that still carries its token by its own ttl from now (this server's clock).
-- $1 ids, $2 fences, $3 ttls in ms. A lease missing from the answer is lost.
UPDATE leasehold.tasks AS t
   SET lease_expires_at = now() + h.ttl_ms * interval '1 millisecond'
  FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS h(id, fence, ttl_ms)
 WHERE t.id = h.id AND t.fence = h.fence AND t.state = 'running'
RETURNING t.id, t.fence
