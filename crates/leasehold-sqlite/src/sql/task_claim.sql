-- Inside BEGIN IMMEDIATE, the first of a claim's statements (then an update, fence_advance.sql and an
-- answer): picks up to {limit} tasks of the queues {queues} (claim.rs writes each name into the text as
-- a constant, `char(...)` of its code points): due available tasks, and running tasks whose lease
-- expired on SQLite's clock (a crashed or paused holder), in claim order. Answers one row: how many were
-- picked, the picks as one JSON array in claim order, and how many of them are taken over ({picks},
-- which claim.rs writes in one of two forms). The plain form lists each pick's rowid alone, for
-- task_claim_update_plain.sql and task_claim_answer_plain.sql; when any pick is taken over, the claim
-- reads its picks again in the marked form, each [rowid, taken_over, exhausted] (an exhausted pick is an
-- expired task with no attempt left, which the update discards), for task_claim_update.sql and
-- task_claim_answer.sql. A claim takes over a lease only after a holder crashed or stalled; the plain
-- update writes five columns with no choice per column, and cost 2.0 us a task where the marked one cost
-- 3.9 (SQLite alone, claims of 400, 2026-12-07), and the plain answer 0.7 us a task against 1.4.
-- The claim is four statements (five after a takeover), each answering one row at most, rather than one
-- update answering a row per task: sqlx copies every value of every row it reads and hands each row from
-- the connection's thread to the task reading it (eleven values a task, about a seventh of a drain's
-- CPU, 2026-12-07).
-- The picks are named by rowid, which SQLite keeps across updates (only VACUUM renumbers the rowids of
-- a table without an INTEGER PRIMARY KEY, and the transaction's write lock keeps it out), so the update
-- and the answer find each pick without descending the text key's index.
-- The limit is a number claim.rs writes into the text, not a bound value: SQLite 3.51 (as bundled with
-- sqlx) lets a bound LIMIT steer the plan, so each new binding of it made SQLite parse and plan the
-- claim again, on every claim (about 1.8M instructions, a sixth of a claim and completion of 100
-- tasks). The queue names are written in for the same reason: once `ANALYZE` has run (an application's
-- `PRAGMA optimize` does), SQLite 3.51 reads a value bound for an indexed column while planning, and
-- prepared the statement again at every claim; with constants a claim of 10 among 10,000 waiting tasks
-- took about 0.09 ms in SQLite, with bound names 0.15 ms before `ANALYZE` and 0.4-0.56 ms after.
-- Each queue is read on its own (one branch of task_claim_available.sql per queue), in the order of the
-- available index (queue, priority, run_at, id), so a claim touches about {limit} index entries however
-- long the backlog. The reads compare with SQLite's clock itself, so that the comparison bounds the
-- index range they read (a join with a clock read once scanned every running task's entry).
-- The expired tasks are read in claim order too, all of them sorted (few, unless many workers crashed at
-- once): read in the order their leases expired, the first {limit} could be tasks due later than the
-- backlog, which lost to it in the picks claim after claim, while a task due before the whole backlog,
-- whose lease expired after theirs, was never read.
WITH candidates AS (
    {available}
    UNION ALL
    SELECT * FROM (
        SELECT t.rowid AS rid, t.priority, t.run_at, t.id, 1 AS taken_over, t.attempt >= t.max_attempts AS exhausted
          FROM leasehold_tasks AS t INDEXED BY leasehold_tasks_lease_expiry_idx
         WHERE t.state = 'running' AND t.lease_expires_at < CAST(unixepoch('subsec') * 1000 AS INTEGER)
           AND t.queue IN ({queues})
         ORDER BY t.priority, t.run_at, t.id
         LIMIT {limit})
), picked AS (
    SELECT * FROM candidates ORDER BY priority, run_at, id LIMIT {limit}
)
SELECT count(*), {picks}, count(*) FILTER (WHERE taken_over)
  FROM picked
