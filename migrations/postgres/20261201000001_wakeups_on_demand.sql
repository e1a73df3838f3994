-- Wake-ups on demand. NOTIFY is not free: PostgreSQL serializes the commits of every notifying
-- transaction on one lock, so an enqueue that notifies nobody still costs every concurrent enqueuer.
-- Enqueues now notify only while some worker of the queue waits for work: an idle worker announces
-- itself here (until its announcement runs out, or it withdraws it when it stops) before it goes to sleep, and checks for work once more
-- after announcing, so a task enqueued in between is found by that check or woken by its notification.
-- The table is unlogged: announcements are soft state, renewed every few poll intervals, and a crash
-- that empties it only delays wake-ups until the next announcement (polling finds the tasks meanwhile).
CREATE UNLOGGED TABLE leasehold.waiting (
    queue  text        NOT NULL,
    -- one listening connection (a worker's wake-up subscription)
    waiter text        NOT NULL,
    until  timestamptz NOT NULL,
    PRIMARY KEY (queue, waiter)
);

-- The enqueue statements notify themselves now (see task_insert*.sql); the trigger would notify always.
DROP TRIGGER tasks_notify_available ON leasehold.tasks;
DROP FUNCTION leasehold.tasks_notify_available();
