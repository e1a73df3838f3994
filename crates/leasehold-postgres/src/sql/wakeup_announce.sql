-- The waiter $3 waits for work on the queues $1 for the next $2 ms (on this server's clock): enqueues into
-- them notify until then. Announcements of those queues that ran out a while ago (their waiter is gone
-- without withdrawing) are cleared on the way, skipping rows another announcement holds locked, so two
-- waiters announcing at once never wait on each other.
-- $4 the offer's number, or NULL for no offer; $5 the worker a task handed over is claimed by; $6 the
-- lease in ms of a task handed over that names none; $7 how long in ms the offer may be taken. The offer replaces this waiter's earlier one, on
-- every queue, and the offers left open by the worker's earlier waiters (a listening connection that
-- broke) are closed, so that no task is handed to a channel nobody listens on any more.
WITH cleared AS (
    DELETE FROM leasehold.waiting
     WHERE ctid IN (SELECT ctid FROM leasehold.waiting
                     WHERE queue = ANY($1::text[]) AND waiter <> $3 AND until < now() - interval '1 minute'
                       FOR UPDATE SKIP LOCKED)
), closed AS (
    UPDATE leasehold.waiting SET offer = NULL
     WHERE ctid IN (SELECT ctid FROM leasehold.waiting
                     WHERE worker = $5 AND waiter <> $3 AND offer IS NOT NULL
                       FOR UPDATE SKIP LOCKED)
)
INSERT INTO leasehold.waiting AS w (queue, waiter, until, worker, lease_ttl_ms, offer, offered_at, offer_max_age_ms)
SELECT q, $3, now() + $2 * interval '1 millisecond', $5, $6, $4, now(), $7 FROM unnest($1::text[]) AS q
ON CONFLICT (queue, waiter) DO UPDATE
   SET until = EXCLUDED.until, worker = EXCLUDED.worker, lease_ttl_ms = EXCLUDED.lease_ttl_ms,
       offer = EXCLUDED.offer, offered_at = EXCLUDED.offered_at, offer_max_age_ms = EXCLUDED.offer_max_age_ms
