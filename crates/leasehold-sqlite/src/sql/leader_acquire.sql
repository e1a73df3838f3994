-- Take the leader lease ?1 for ?2 when it is free or expired (a new term with the new token ?4), or
-- extend it when ?2 holds it (the same term keeps its token). ?3 ttl in ms. No row: someone else leads.
INSERT INTO leasehold_leaders AS l (name, holder, token, expires_at)
SELECT ?1, ?2, ?4, n.ms + ?3 FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n WHERE true
ON CONFLICT (name) DO UPDATE
   SET holder = excluded.holder,
       token = CASE WHEN l.holder = excluded.holder AND l.expires_at >= CAST(unixepoch('subsec') * 1000 AS INTEGER)
                    THEN l.token ELSE excluded.token END,
       expires_at = excluded.expires_at
 WHERE l.holder = excluded.holder OR l.expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
RETURNING token
