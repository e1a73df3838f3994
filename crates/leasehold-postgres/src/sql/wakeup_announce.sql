-- The waiter $3 waits for work on the queues $1 for the next $2 ms (on this server's clock): enqueues into
-- them notify until then. Announcements of those queues that ran out a while ago (their waiter is gone
-- without withdrawing) are cleared on the way, skipping rows another announcement holds locked, so two
-- waiters announcing at once never wait on each other.
WITH cleared AS (
    DELETE FROM leasehold.waiting
     WHERE ctid IN (SELECT ctid FROM leasehold.waiting
                     WHERE queue = ANY($1::text[]) AND waiter <> $3 AND until < now() - interval '1 minute'
                       FOR UPDATE SKIP LOCKED)
)
INSERT INTO leasehold.waiting AS w (queue, waiter, until)
SELECT q, $3, now() + $2 * interval '1 millisecond' FROM unnest($1::text[]) AS q
ON CONFLICT (queue, waiter) DO UPDATE SET until = EXCLUDED.until
