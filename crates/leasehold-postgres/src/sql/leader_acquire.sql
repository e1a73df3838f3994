-- Take the leader lease $1 for $2 when it is free or expired (a new term with a new token from the
-- fencing sequence), or extend it when $2 holds it (the same term keeps its token). $3 ttl in ms.
-- No row: someone else leads.
-- A new term's token is drawn under the row's lock (in DO UPDATE), so the terms of one lease get
-- increasing tokens in the order they began; a released lease keeps its row (expired), so every later
-- term goes through that path. Only the first term of a name takes the token drawn for the INSERT.
INSERT INTO leasehold.leaders AS l (name, holder, token, expires_at)
VALUES ($1, $2, nextval('leasehold.fence_seq'), now() + $3 * interval '1 millisecond')
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder,
       token = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at >= now() THEN l.token
                    ELSE nextval('leasehold.fence_seq') END,
       expires_at = EXCLUDED.expires_at
 WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING token
