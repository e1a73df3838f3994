-- Whether anything is claimable in the queues $1, read without locking: due available tasks, or running
-- tasks whose lease expired. After an empty claim, true means other claimers held those rows.
SELECT EXISTS (
    SELECT 1 FROM leasehold.tasks
     WHERE state = 'available' AND queue = ANY($1) AND run_at <= now()
) OR EXISTS (
    SELECT 1 FROM leasehold.tasks
     WHERE state = 'running' AND lease_expires_at < now() AND queue = ANY($1)
)
