-- The claim's answer, last in its transaction, after task_claim_update_plain.sql: the tasks of the
-- picks ?1 (task_claim.sql's JSON array of rowids, in its plain form) as that update left them, in the
-- layout of task_claim_answer.sql (rows.rs decodes both), none of them taken over or discarded.
-- ?2 the default lease ttl in ms.
SELECT json_group_array(json_array(t.id, t.fence, t.kind, t.queue, json(t.payload), t.attempt, t.max_attempts,
                                   coalesce(t.lease_ttl_ms, ?2), t.run_at, 0, 0)
                        ORDER BY p.key)
  FROM json_each(?1) AS p
  JOIN leasehold_tasks AS t ON t.rowid = p.value
