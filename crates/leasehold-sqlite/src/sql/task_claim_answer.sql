-- The claim's answer, last in its transaction, after task_claim_update.sql: the tasks of the picks ?1
-- (task_claim.sql's JSON array in its marked form) as that update left them, as one JSON array in
-- claim order, each [id, fence, kind, queue, payload, attempt, max_attempts, lease ttl in ms (?2 when
-- the task names none), run_at, taken_over, exhausted]: claimed, or (exhausted) discarded, whose other
-- fields are not read. The payload is embedded as JSON (`json()` of a column that holds valid JSON
-- only), so it is parsed once, with the answer. rows.rs decodes the answer by position: keep the order
-- (task_claim_answer_plain.sql answers in the same one).
SELECT json_group_array(json_array(t.id, t.fence, t.kind, t.queue, json(t.payload), t.attempt, t.max_attempts,
                                   coalesce(t.lease_ttl_ms, ?2), t.run_at, p.value ->> 1, p.value ->> 2)
                        ORDER BY p.key)
  FROM json_each(?1) AS p
  JOIN leasehold_tasks AS t ON t.rowid = p.value ->> 0
