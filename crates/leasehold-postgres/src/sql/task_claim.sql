-- Claim up to LIMIT tasks from the queues QUEUES: due available tasks, and running tasks whose lease
-- expired on this server's clock (a crashed or paused holder). Every claimed task gets a new fencing token.
-- An expired task with no attempt left is discarded instead (its holder kept crashing or stalling), with
-- the error $3; it is not among the tasks answered, but in the answer's `discarded` list.
-- $1 default lease ttl in ms, $2 worker id.
-- The queues (an ARRAY[...] of quoted literals) and the limit (a number) are written into the statement's
-- placeholders (the comments are left out of the text sent), not bound:
-- with no bound value that changes its estimates, PostgreSQL plans the statement five times and then
-- keeps one generic plan, where bound queues and limit made it plan every claim anew (planning was
-- about a quarter of a claim's time on the server).
-- When fewer than LIMIT tasks were picked (claimed, discarded or left alone, as below), `due_seen` counts
-- the due available tasks the statement's snapshot saw (up to LIMIT): rows that other claimers held
-- locked still read as available there, so seeing more than were claimed means this claim was contended.
-- `picked` counts the picks, once, in the one row the answer's tasks are joined to: with nothing claimed,
-- that row carries both, with NULLs for a task. `discarded` lists the exhausted tasks discarded, each
-- [id, queue, kind] (NULL for none), in every row.
-- `table_pages` is the size of the tasks table on disk, in pages. The store writes its class in a comment
-- after the statement, so that a claim after the table grew or shrank past a class is another prepared
-- statement, planned for the table as it is then (see size.rs).
-- The answer's columns are decoded by position (rows.rs, ClaimRow): keep their order.
-- The updates reach the picked tasks by the row versions this statement locked, `t.ctid = ANY(ARRAY(...))`
-- (a ctid names a row within one table: the tasks table is neither partitioned nor inherited from):
-- a read of each row where it lies, with no index to descend (on a claim of 512, looking the tasks up by
-- key in the primary key took about a sixth of the statement's time). A locked version stays where it is
-- until this transaction ends, so the update finds it there. One exception is harmless: when another
-- transaction updated a row, and committed, after this statement's snapshot was taken, the lock follows
-- the row to its newer version and checks it again; if it is still due, that version is locked, but this
-- snapshot does not see it, so the update leaves it alone and it is not in the answer: it stays available
-- for the next claim (checked by hand with a claim made to sleep before its reads). `picked` still counts
-- it, as it counts the discarded tasks, so the worker knows the claim reached its limit and claims again
-- at once. No join to `picked` stands beside the condition: joined on the key, the plan for a claim of
-- several hundred (the limit is in the text, so the planner knows how many) hashed a sequential scan of
-- the whole table once it held fewer than about a hundred times the limit (tests/plans.rs). So the
-- discarded tasks have an update of their own, and whether a task was taken over comes from its own row
-- (a running task is one whose lease expired) or, in the answer, from `picked`.
-- Each queue is read on its own, in the order of the available index (queue, priority, run_at, id), so a
-- claim touches about LIMIT index entries however long the backlog; `queue = ANY(...)` would sort them all.
-- The expired tasks are taken in the same claim order, from the first thousand (or LIMIT, if more) in
-- the order their leases expired (`expired_window`, read along the expiry index, which stops there).
-- Taken in expiry order, as they once were, the first LIMIT could be tasks due later than the backlog,
-- which lost to it in `picked` claim after claim, while a task due before the whole backlog, whose lease
-- happened to expire after theirs, was never read (found by the long fault profile: takeovers waiting
-- 20 s to 2 minutes while a backlog of later tasks was claimed). The window bounds the read where many
-- leases expired at once: sorting every expired task instead planned a sequential scan of the whole
-- table on statistics taken while the running tasks' leases had expired (tests/plans.rs), and with
-- 100,000 expired took 53-81 ms for a claim of 512, against 14-19 ms with the window. A task can still
-- wait behind a thousand expired tasks that expired before it and are due after the backlog. The window
-- locks nothing; `expired` locks the versions it reads by ctid. Its own `state = 'running' AND
-- lease_expires_at < now()` is what leaves out a row another transaction updated since this statement's
-- snapshot (taken over and renewed, completed): the lock follows the row to its newest version and checks
-- those conditions again (PostgreSQL does not check the ctid again), so they must stay. A newest version
-- that still meets them is locked but invisible to this snapshot, and `claimed` leaves it alone, as
-- described above.
WITH available AS (
    SELECT a.ctid, a.id, a.priority, a.run_at, false AS taken_over, false AS exhausted
      FROM unnest({queues}) AS q(name)
     CROSS JOIN LATERAL (
            SELECT ctid, id, priority, run_at
              FROM leasehold.tasks
             WHERE state = 'available' AND queue = q.name AND run_at <= now()
             ORDER BY priority, run_at, id
             LIMIT {limit}
               FOR UPDATE SKIP LOCKED
           ) AS a
), expired_window AS MATERIALIZED (
    SELECT ctid
      FROM leasehold.tasks
     WHERE state = 'running' AND lease_expires_at < now() AND queue = ANY({queues})
     ORDER BY lease_expires_at
     LIMIT greatest({limit}, 1000)
), expired AS (
    SELECT ctid, id, priority, run_at, true AS taken_over, attempt >= max_attempts AS exhausted
      FROM leasehold.tasks
     WHERE ctid = ANY(ARRAY(SELECT ctid FROM expired_window))
       AND state = 'running' AND lease_expires_at < now()
     ORDER BY priority, run_at, id
     LIMIT {limit}
       FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT ctid, id, priority, run_at, taken_over, exhausted
      FROM (SELECT * FROM available UNION ALL SELECT * FROM expired) AS c
     ORDER BY priority, run_at, id
     LIMIT {limit}
), discarded AS (
UPDATE leasehold.tasks AS t
   SET state = 'discarded',
       lease_expires_at = NULL,
       lease_losses = t.lease_losses + 1,
       errors = t.errors || jsonb_build_array(jsonb_build_object('attempt', t.attempt, 'at', now(), 'message', $3::text)),
       finalized_at = now()
 WHERE t.ctid = ANY(ARRAY(SELECT ctid FROM picked WHERE exhausted))
RETURNING t.id, t.queue, t.kind
), claimed AS (
UPDATE leasehold.tasks AS t
   SET state = 'running',
       attempt = t.attempt + 1,
       fence = nextval('leasehold.fence_seq'),
       lease_expires_at = now() + coalesce(t.lease_ttl_ms, $1) * interval '1 millisecond',
       claimed_by = $2,
       lease_losses = t.lease_losses + (t.state = 'running')::integer
 WHERE t.ctid = ANY(ARRAY(SELECT ctid FROM picked WHERE NOT exhausted))
RETURNING t.id, t.fence, t.kind, t.queue, t.payload, t.attempt, t.max_attempts,
          coalesce(t.lease_ttl_ms, $1)::bigint AS lease_ttl_ms, t.run_at
)
SELECT c.id, c.fence, c.kind, c.queue, c.payload, c.attempt, c.max_attempts, c.lease_ttl_ms,
       c.run_at, p.taken_over,
       CASE WHEN n.picked < {limit}
            THEN least({limit}, (SELECT count(*)
                              FROM unnest({queues}) AS q(name)
                             CROSS JOIN LATERAL (SELECT 1 FROM leasehold.tasks
                                                  WHERE state = 'available' AND queue = q.name AND run_at <= now()
                                                  ORDER BY priority, run_at, id
                                                  LIMIT {limit}) AS d))
            ELSE 0 END AS due_seen,
       (SELECT pg_relation_size('leasehold.tasks') / current_setting('block_size')::bigint) AS table_pages,
       n.picked,
       (SELECT json_agg(json_build_array(d.id, d.queue, d.kind)) FROM discarded AS d) AS discarded
  FROM (SELECT count(*) AS picked FROM picked) AS n LEFT JOIN (claimed AS c JOIN picked AS p ON p.id = c.id) ON true
 ORDER BY p.priority, p.run_at, p.id
