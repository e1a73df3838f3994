-- leasehold's task table. Everything lives in the `leasehold` schema so it never collides with the host
-- application's tables; the migrations table is `leasehold._sqlx_migrations`.

-- Fencing tokens: one sequence for every claim of every task. A sequence never goes backwards, not even
-- after a crash of the server (it logs ahead of the values it hands out).
CREATE SEQUENCE leasehold.fence_seq AS bigint;

CREATE TABLE leasehold.tasks (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL CHECK (kind <> ''),
    queue            text        NOT NULL CHECK (queue <> ''),
    payload          jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'completed', 'cancelled', 'discarded')),
    priority         smallint    NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    -- the lease this task asks for; NULL takes the claiming worker's default
    lease_ttl_ms     integer     CHECK (lease_ttl_ms >= 1000),
    -- the token of the latest claim, and when its lease ends on this server's clock
    fence            bigint,
    lease_expires_at timestamptz,
    claimed_by       text,
    lease_losses     integer     NOT NULL DEFAULT 0,
    errors           jsonb       NOT NULL DEFAULT '[]',
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finalized_at     timestamptz,
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL))
);

-- What a claim reads: available tasks in claim order, and running tasks by lease expiry (takeover).
CREATE INDEX tasks_available_idx ON leasehold.tasks (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX tasks_lease_expiry_idx ON leasehold.tasks (lease_expires_at) WHERE state = 'running';

-- Wake idle workers when tasks are inserted ready to run. One notification per queue and statement;
-- PostgreSQL delivers it on commit, so a rolled-back enqueue wakes nobody.
CREATE FUNCTION leasehold.tasks_notify_available() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('leasehold_available', q.queue)
       FROM (SELECT DISTINCT queue FROM inserted WHERE run_at <= now()) AS q;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify_available
    AFTER INSERT ON leasehold.tasks
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION leasehold.tasks_notify_available();
