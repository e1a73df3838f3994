-- Inside the claim's transaction, after task_claim.sql in its marked form, when a pick is taken over
-- (task_claim_update_plain.sql claims the others): claims its picks ?1 (that statement's JSON array, in
-- claim order, each [rowid, taken_over, exhausted]). Every claimed task gets a token: the counter's
-- value plus its rank, its place in ?1 counted from 1; the caller then moves the counter past the ranks
-- it used (fence_advance.sql). An exhausted pick (an expired task with no attempt left: its holder kept
-- crashing or stalling) is discarded instead, with the error ?4.
-- ?2 the default lease ttl in ms, ?3 the worker id. Each pick is found by its rowid (tests/plans.rs).
UPDATE leasehold_tasks AS t
   SET state = CASE WHEN p.exhausted THEN 'discarded' ELSE 'running' END,
       attempt = CASE WHEN p.exhausted THEN t.attempt ELSE t.attempt + 1 END,
       fence = CASE WHEN p.exhausted THEN t.fence ELSE f.value + p.rank END,
       lease_expires_at = CASE WHEN p.exhausted THEN NULL ELSE n.ms + coalesce(t.lease_ttl_ms, ?2) END,
       claimed_by = CASE WHEN p.exhausted THEN t.claimed_by ELSE ?3 END,
       lease_losses = t.lease_losses + p.taken_over,
       errors = CASE WHEN p.exhausted
                     THEN json_insert(t.errors, '$[#]', json_object('attempt', t.attempt, 'at', n.ms, 'message', ?4))
                     ELSE t.errors END,
       finalized_at = CASE WHEN p.exhausted THEN n.ms ELSE t.finalized_at END
  FROM (SELECT value ->> 0 AS rid, value ->> 1 AS taken_over, value ->> 2 AS exhausted, key + 1 AS rank
          FROM json_each(?1)) AS p,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n,
       leasehold_fence AS f
 WHERE t.rowid = p.rid AND f.id = 1
