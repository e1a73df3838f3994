-- Take the leader lease $1 for $2 when it is free or expired (a new term with a new token from the
-- fencing sequence), or extend it when $2 holds it (the same term keeps its token). $3 ttl in ms.
-- No row: someone else leads.
INSERT INTO leasehold.leaders AS l (name, holder, token, expires_at)
VALUES ($1, $2, nextval('leasehold.fence_seq'), now() + $3 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder,
       token = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= now() THEN l.token ELSE EXCLUDED.token END,
       expires_at = EXCLUDED.expires_at
 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING token
