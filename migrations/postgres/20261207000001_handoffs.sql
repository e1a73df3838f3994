-- Hand-offs: an idle worker's announcement may carry an offer to take one task of its queues as it is
-- enqueued. An enqueue that finds an open offer claims its task for that worker in its own statement
-- (a new fencing token, a lease on this server's clock) and sends it on the waiter's own channel,
-- `leasehold_handoff_<waiter>`, sparing the worker the claim's round trip (task_insert_handoff.sql).
ALTER TABLE leasehold.waiting
    -- the worker a task handed over is claimed by (a claim's worker id)
    ADD COLUMN worker       text,
    -- the lease of a task handed over that names none of its own, in ms
    ADD COLUMN lease_ttl_ms integer,
    -- the open offer's number, echoed in the hand-off; NULL: no offer open
    ADD COLUMN offer        bigint,
    -- when the announcement that made the offer ran, on this server's clock: a lease handed over
    -- starts no earlier, since the worker's trust window counts from before it sent that announcement
    ADD COLUMN offered_at   timestamptz,
    -- how long after offered_at the offer may be taken, in ms, for a lease of lease_ttl_ms (in
    -- proportion for another lease): the worker's trust in a lease runs from the offer
    ADD COLUMN offer_max_age_ms integer;
