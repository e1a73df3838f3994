-- Singleton scheduled jobs: the leader lease, the schedules, and the per-tick ledger.
-- (See the PostgreSQL migration of the same name.) Times are ms since the Unix epoch.

CREATE TABLE leasehold_leaders (
    name       TEXT    PRIMARY KEY NOT NULL,
    holder     TEXT    NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE leasehold_schedules (
    name          TEXT    PRIMARY KEY NOT NULL,
    definition    TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    last_tick     INTEGER,
    last_task     TEXT,
    buffered_tick INTEGER,
    trigger_at    INTEGER,
    removed       INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER))
) STRICT;

CREATE TABLE leasehold_schedule_ticks (
    schedule     TEXT    NOT NULL,
    tick         INTEGER NOT NULL,
    manual       INTEGER NOT NULL DEFAULT 0,
    outcome      TEXT    NOT NULL
                 CHECK (outcome IN ('enqueued', 'caught_up', 'missed', 'skipped', 'buffered', 'triggered')),
    task_id      TEXT,
    leader_token INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000 AS INTEGER)),
    PRIMARY KEY (schedule, tick, manual)
) STRICT;
