-- The tasks table's single-column rules move from CHECK constraints into domains, with the same rules.
-- PostgreSQL 15 reads a table's CHECK constraints back from their stored text and plans them again at the
-- start of every statement that writes the table, so the five single-column checks cost every single-row
-- statement (an enqueue, a hand-off, the completion of one task) several microseconds. A domain's check
-- is planned once per connection and kept with the type, and it runs where a value is written into the
-- column, not on every update of the row. The rule that ties the state to the lease spans two columns and
-- stays a CHECK constraint of the table.
--
-- The domains are made without their checks, so that changing the columns' types does not rewrite the
-- table; it rebuilds the two partial indexes whose condition reads the state (they hold the available and
-- the running tasks only). The checks are then added to the domains, which reads every row once to
-- validate it (each row already met the table's checks), and the table's checks dropped. All of it holds
-- the table's exclusive lock until the migration commits.
CREATE DOMAIN leasehold.task_state AS text;
CREATE DOMAIN leasehold.nonempty_text AS text;
CREATE DOMAIN leasehold.attempt_limit AS integer;
CREATE DOMAIN leasehold.lease_millis AS integer;

ALTER TABLE leasehold.tasks
    ALTER COLUMN state        TYPE leasehold.task_state,
    ALTER COLUMN kind         TYPE leasehold.nonempty_text,
    ALTER COLUMN queue        TYPE leasehold.nonempty_text,
    ALTER COLUMN max_attempts TYPE leasehold.attempt_limit,
    ALTER COLUMN lease_ttl_ms TYPE leasehold.lease_millis;

ALTER DOMAIN leasehold.task_state
    ADD CONSTRAINT task_state_known CHECK (VALUE IN ('available', 'running', 'completed', 'cancelled', 'discarded'));
ALTER DOMAIN leasehold.nonempty_text ADD CONSTRAINT nonempty_text_not_empty CHECK (VALUE <> '');
-- the number of claims a task may have; a task is claimed at least once
ALTER DOMAIN leasehold.attempt_limit ADD CONSTRAINT attempt_limit_positive CHECK (VALUE >= 1);
-- the shortest lease a task may ask for
ALTER DOMAIN leasehold.lease_millis ADD CONSTRAINT lease_millis_at_least_a_second CHECK (VALUE >= 1000);

ALTER TABLE leasehold.tasks
    DROP CONSTRAINT tasks_state_check,
    DROP CONSTRAINT tasks_kind_check,
    DROP CONSTRAINT tasks_queue_check,
    DROP CONSTRAINT tasks_max_attempts_check,
    DROP CONSTRAINT tasks_lease_ttl_ms_check;
