-- Insert tasks given as one JSON array of objects {id, kind, queue, payload, priority, run_at (ms or
-- null = now), delay_ms, max_attempts, lease_ttl_ms}: a batch whose tasks differ in more than their id and
-- payload (task_insert_alike.sql takes the others), in one statement.
-- jsonb_each, not json_each: it hands each object over as JSONB, so reading its nine fields does not
-- render the object as text and parse it again for each field (three times the cost per row).
INSERT INTO leasehold_tasks (id, kind, queue, payload, priority, run_at, max_attempts, lease_ttl_ms, created_at)
SELECT t.value ->> 'id', t.value ->> 'kind', t.value ->> 'queue', json(t.value -> 'payload'),
       t.value ->> 'priority',
       coalesce(t.value ->> 'run_at', n.ms) + (t.value ->> 'delay_ms'),
       t.value ->> 'max_attempts', t.value ->> 'lease_ttl_ms', n.ms
  FROM jsonb_each(?1) AS t, (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) AS ms) AS n
