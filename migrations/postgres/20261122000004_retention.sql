-- Retention: finished tasks are deleted some time after they finished. The pruner reads them by
-- finalized_at through this index, which holds finished tasks only.
CREATE INDEX tasks_finalized_idx ON leasehold.tasks (finalized_at) WHERE finalized_at IS NOT NULL;
