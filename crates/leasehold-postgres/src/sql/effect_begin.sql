-- Claim an effect key in the caller's transaction for the lease $2, $3 (both NULL: no task's lease).
-- `holds`: the lease is the task's current one (the task runs under that very token); a lease lost
-- already claims nothing. The check reads the task row without locking it: locking it FOR SHARE would
-- stall the heartbeat's renewals of every task until this transaction ends, and FOR KEY SHARE does not
-- keep a takeover out. It refuses a holder whose lease was taken over before it began the effect; the
-- completion in the same transaction (complete_in) is what refuses one that loses it afterwards. The
-- state is compared with a subquery's value, so the task is looked up by key, never along the partial
-- index of running tasks (see task_finish.sql).
-- `claimed`: the key was free and is this transaction's now. Neither: the effect was recorded already
-- (a concurrent claim of the same key waits here for the other transaction to end).
WITH holder AS (
    SELECT $2::uuid IS NULL
           OR EXISTS (SELECT 1 FROM leasehold.tasks
                       WHERE id = $2 AND fence = $3 AND state = (SELECT 'running'::text)) AS holds
), claimed AS (
    INSERT INTO leasehold.effects (key, task_id, fence)
    SELECT $1, $2, $3 FROM holder WHERE holds
    ON CONFLICT (key) DO NOTHING
    RETURNING key
)
SELECT h.holds, EXISTS (SELECT 1 FROM claimed) AS claimed FROM holder AS h
