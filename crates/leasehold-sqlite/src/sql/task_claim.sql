-- Inside BEGIN IMMEDIATE: claim up to {limit} tasks of the queues {queues} (claim.rs writes each name
-- into the text as a constant, `char(...)` of its code points): due available tasks, and running tasks
-- whose lease expired
-- on SQLite's clock (a crashed or paused holder). Every claimed task gets a token: the counter's value
-- plus its rank in claim order; the caller then moves the counter past the ranks it used
-- (fence_advance.sql). An expired task with no attempt left is discarded instead, with the error ?3 (its
-- holder kept crashing or stalling); it comes back with `running` false and the caller drops it.
-- ?1 the default lease ttl in ms, ?2 the worker id. The limit is a number claim.rs writes into the text,
-- not a bound value: SQLite 3.51 (as bundled with sqlx) lets a bound LIMIT steer the plan, so each new
-- binding of it made SQLite parse and plan this 3 kB statement again, on every claim (about 1.8M
-- instructions, a sixth of a claim and completion of 100 tasks). The queue names are written in for the
-- same reason: once `ANALYZE` has run (an application's `PRAGMA optimize` does), SQLite 3.51 reads a
-- value bound for an indexed column while planning, and prepared the statement again at every claim;
-- with constants a claim of 10 among 10,000 waiting tasks took about 0.09 ms in SQLite, with bound
-- names 0.15 ms before `ANALYZE` and 0.4-0.56 ms after.
-- One statement, where a claim was once five (a read per queue, the expired leases, the counter, the
-- update): sqlx hands each statement, and each row of its answer, between threads.
-- Each queue is read on its own (one branch of task_claim_available.sql per queue), in the order of the available index
-- (queue, priority, run_at, id), so a claim touches about {limit} index entries however long the backlog.
-- The reads compare with SQLite's clock itself, not with `n`, so that the comparison bounds the index
-- range they read (a join with `n` scanned every running task's entry); SQLite reads the clock once per
-- statement, so every use sees the same time.
-- The expired tasks are read in claim order too, all of them sorted (few, unless many workers crashed at
-- once): read in the order their leases expired, the first {limit} could be tasks due later than the
-- backlog, which lost to it in `picked` claim after claim, while a task due before the whole backlog,
-- whose lease expired after theirs, was never read.
-- `taken` holds the picks taken over from an expired lease (almost always none): RETURNING sees only
-- the updated table, so it looks them up there.
-- The answer's columns are decoded by position (rows.rs, ClaimRow): keep their order.
WITH n AS MATERIALIZED (
    SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms
), candidates AS (
    {available}
    UNION ALL
    SELECT * FROM (
        SELECT t.id, t.priority, t.run_at, 1 AS taken_over, t.attempt >= t.max_attempts AS exhausted
          FROM leasehold_tasks AS t INDEXED BY leasehold_tasks_lease_expiry_idx
         WHERE t.state = 'running' AND t.lease_expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
           AND t.queue IN ({queues})
         ORDER BY t.priority, t.run_at, t.id
         LIMIT {limit})
), picked AS MATERIALIZED (
    SELECT id, taken_over, exhausted, row_number() OVER (ORDER BY priority, run_at, id) AS rank
      FROM candidates
     ORDER BY priority, run_at, id
     LIMIT {limit}
), taken AS MATERIALIZED (
    SELECT id AS taken_id FROM picked WHERE taken_over
)
UPDATE leasehold_tasks AS t
   SET state = CASE WHEN p.exhausted THEN 'discarded' ELSE 'running' END,
       attempt = CASE WHEN p.exhausted THEN t.attempt ELSE t.attempt + 1 END,
       fence = CASE WHEN p.exhausted THEN t.fence ELSE f.value + p.rank END,
       lease_expires_at = CASE WHEN p.exhausted THEN NULL ELSE n.ms + coalesce(t.lease_ttl_ms, ?1) END,
       claimed_by = CASE WHEN p.exhausted THEN t.claimed_by ELSE ?2 END,
       lease_losses = t.lease_losses + p.taken_over,
       errors = CASE WHEN p.exhausted
                     THEN json_insert(t.errors, '$[#]', json_object('attempt', t.attempt, 'at', n.ms, 'message', ?3))
                     ELSE t.errors END,
       finalized_at = CASE WHEN p.exhausted THEN n.ms ELSE t.finalized_at END
  FROM picked AS p, n, leasehold_fence AS f
 WHERE t.id = p.id AND f.id = 1
RETURNING id, fence, kind, queue, payload, attempt, max_attempts, coalesce(lease_ttl_ms, ?1) AS lease_ttl_ms, run_at,
          state = 'running' AS running, EXISTS (SELECT 1 FROM taken WHERE taken_id = id) AS taken_over
