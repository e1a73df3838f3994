-- Wake the workers waiting on the queues $1 (tasks there became available again at once).
SELECT pg_notify('leasehold_available', q)
  FROM unnest($1::text[]) AS q
 WHERE EXISTS (SELECT 1 FROM leasehold.waiting AS w WHERE w.queue = q AND w.until > now())
