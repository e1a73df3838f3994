-- Inside the claim's transaction, after task_claim.sql in its plain form, when no pick is taken over:
-- claims its picks ?1 (that statement's JSON array of rowids, in claim order), all of them available
-- tasks. Every task gets a token: the counter's value plus its rank, its place in ?1 counted from 1;
-- the caller then moves the counter past the ranks it used (fence_advance.sql). What
-- task_claim_update.sql does for these picks, with none of its choices per column: no pick is taken
-- over, and none is discarded, so the lease losses, the errors and the time finalized stay as they
-- are (and the index of finished tasks is not touched).
-- ?2 the default lease ttl in ms, ?3 the worker id. Each pick is found by its rowid (tests/plans.rs).
UPDATE leasehold_tasks AS t
   SET state = 'running',
       attempt = t.attempt + 1,
       fence = f.value + p.rank,
       lease_expires_at = n.ms + coalesce(t.lease_ttl_ms, ?2),
       claimed_by = ?3
  FROM (SELECT value AS rid, key + 1 AS rank FROM json_each(?1)) AS p,
       (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n,
       leasehold_fence AS f
 WHERE t.rowid = p.rid AND f.id = 1
