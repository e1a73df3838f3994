-- Insert one task, as task_insert_one.sql does ($1 to $9 the same, but $2 the payload's JSON text), and
-- when a worker waiting on its
-- queue offered to take a task (wakeup_announce.sql), claim it for that worker here: the task goes in
-- running, with its first attempt, a new fencing token and a lease, and is sent whole on the waiter's
-- own channel. The worker then holds it as if it had claimed it, without a claim's round trip.
-- Without an offer to take, it wakes the workers waiting on its queue, as task_insert_one.sql does; and
-- it answers, as that one does, whether any worker waits on the queue.
-- Only the client's own enqueues run this statement, never one inside the application's transaction:
-- there the offer's row could be locked for as long as that transaction lasts, and under REPEATABLE READ
-- locking a row that changed since the snapshot is an error.
-- A task is handed over only when:
-- - $10 is true, which the store decides before sending (store.rs, `may_hand_off`): the task may be
--   attempted more than once (a hand-off whose notification never arrives, the worker's listening
--   connection having broken meanwhile, is taken over when its lease expires, which spends an attempt),
--   and its payload, kind and queue take at most 6,000 bytes as compact JSON;
-- - the notification fits: PostgreSQL takes up to 8,000 bytes, and jsonb prints its text wider than the
--   compact JSON (a space after each ':' and ',', a number in every digit: `1e300` takes 301 bytes), so
--   the variable part's printed length is checked too, only once an offer was found (a condition that
--   names no column of the row would be checked before the offer is looked for, at every enqueue);
-- - it is due now;
-- - the offer is recent: made less than its `offer_max_age_ms` ago (in proportion to the task's lease),
--   since the worker trusts the lease from when it sent the offer (the lease starts no earlier than
--   `offered_at`, as below) and must renew it in time.
-- Offers are taken with SKIP LOCKED: two enqueues at once take two offers, or one of them none. Any
-- open offer will do (ordering them by age cost every enqueue a sort, even with no worker waiting): a
-- worker that filled up by claiming since it offered gives the task back at once, and its offer, not
-- renewed while it is full, ages out.
WITH offer AS (
    UPDATE leasehold.waiting AS w
       SET offer = NULL
      FROM (SELECT ctid, offer
              FROM leasehold.waiting
             WHERE queue = $4 AND offer IS NOT NULL AND until > now()
               AND offered_at > now() - offer_max_age_ms * (coalesce($9, lease_ttl_ms)::float8 / lease_ttl_ms)
                                        * interval '1 millisecond'
             LIMIT 1
               FOR UPDATE SKIP LOCKED) AS o
     WHERE w.ctid = o.ctid
       AND $10
       AND coalesce($6, now()) + $7 * interval '1 millisecond' <= now()
       AND CASE WHEN o.offer IS NULL THEN false
                ELSE octet_length(json_build_object('kind', $3::text, 'queue', $4::text, 'payload', $2::jsonb)::text) <= 7600
           END
    RETURNING w.waiter, w.worker, o.offer, greatest(now(), w.offered_at) AS granted,
              coalesce($9, w.lease_ttl_ms) AS lease_ttl_ms
), inserted AS (
    INSERT INTO leasehold.tasks AS t (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms,
                                      state, attempt, fence, lease_expires_at, claimed_by)
    SELECT $1, $3, $4, $2::jsonb, $5, coalesce($6, now()) + $7 * interval '1 millisecond', $8, $9,
           CASE WHEN o.waiter IS NULL THEN 'available' ELSE 'running' END,
           CASE WHEN o.waiter IS NULL THEN 0 ELSE 1 END,
           CASE WHEN o.waiter IS NULL THEN NULL ELSE nextval('leasehold.fence_seq') END,
           o.granted + o.lease_ttl_ms * interval '1 millisecond',
           o.worker
      FROM (VALUES (1)) AS one(x) LEFT JOIN offer AS o ON true
    RETURNING t.id, t.kind, t.queue, t.payload, t.run_at, t.max_attempts, t.fence
), told AS (
    SELECT i.*, o.waiter, o.offer, o.lease_ttl_ms AS handed_ttl_ms,
           o.waiter IS NOT NULL
             OR EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = i.queue AND w.until > now()) AS waits
      FROM inserted AS i LEFT JOIN offer AS o ON true
)
SELECT t.waits,
       CASE
         WHEN t.waiter IS NOT NULL THEN
           pg_notify('leasehold_handoff_' || t.waiter,
                     json_build_object('offer', t.offer, 'id', t.id, 'fence', t.fence, 'kind', t.kind,
                                       'queue', t.queue, 'payload', t.payload, 'max_attempts', t.max_attempts,
                                       'lease_ttl_ms', t.handed_ttl_ms,
                                       'run_at_us', (extract(epoch FROM t.run_at) * 1000000)::bigint)::text)
         WHEN t.waits AND t.run_at <= now() THEN
           pg_notify('leasehold_available', t.queue)
       END
  FROM told AS t
