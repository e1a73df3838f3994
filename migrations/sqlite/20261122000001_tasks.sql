-- leasehold's task table on SQLite. Names carry a `leasehold_` prefix (SQLite has no schemas) and the
-- migrations table is `leasehold_migrations`, so a database file can be shared with the application.
-- Times are integer milliseconds since the Unix epoch, always taken from SQLite's own clock in the
-- statement that uses them.

CREATE TABLE leasehold_tasks (
    id               TEXT    PRIMARY KEY NOT NULL,
    kind             TEXT    NOT NULL CHECK (kind <> ''),
    queue            TEXT    NOT NULL CHECK (queue <> ''),
    payload          TEXT    NOT NULL CHECK (json_valid(payload)),
    state            TEXT    NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'completed', 'cancelled', 'discarded')),
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    lease_ttl_ms     INTEGER CHECK (lease_ttl_ms >= 1000),
    fence            INTEGER,
    lease_expires_at INTEGER,
    claimed_by       TEXT,
    lease_losses     INTEGER NOT NULL DEFAULT 0,
    errors           TEXT    NOT NULL DEFAULT '[]',
    result           TEXT,
    created_at       INTEGER NOT NULL,
    finalized_at     INTEGER,
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL))
) STRICT;

CREATE INDEX leasehold_tasks_available_idx ON leasehold_tasks (queue, priority, run_at, id) WHERE state = 'available';
CREATE INDEX leasehold_tasks_lease_expiry_idx ON leasehold_tasks (lease_expires_at) WHERE state = 'running';

-- The fencing-token counter: one row, bumped inside the claiming transaction. It only grows, and it is
-- in the same file as the tasks, so a token is never reused, not even after a crash.
CREATE TABLE leasehold_fence (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO leasehold_fence (id, value) VALUES (1, 0);
