-- Singleton scheduled jobs: the leader lease, the schedules, and the per-tick ledger.

-- Named leader leases. The token comes from the fencing sequence, so it increases across every term.
CREATE TABLE leasehold.leaders (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    token      bigint      NOT NULL,
    expires_at timestamptz NOT NULL
);

-- One row per schedule, written by the leader from its code's definitions.
CREATE TABLE leasehold.schedules (
    name          text        PRIMARY KEY,
    definition    jsonb       NOT NULL,
    fingerprint   text        NOT NULL,
    paused        boolean     NOT NULL DEFAULT false,
    last_tick     timestamptz,
    last_task     uuid,
    buffered_tick timestamptz,
    trigger_at    timestamptz,
    removed       boolean     NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The ledger: at most one row per (schedule, tick), so a tick runs at most once however many leaders
-- believe they lead. `manual` separates operator-triggered runs from the expression's ticks.
CREATE TABLE leasehold.schedule_ticks (
    schedule     text        NOT NULL,
    tick         timestamptz NOT NULL,
    manual       boolean     NOT NULL DEFAULT false,
    outcome      text        NOT NULL
                 CHECK (outcome IN ('enqueued', 'caught_up', 'missed', 'skipped', 'buffered', 'triggered')),
    task_id      uuid,
    leader_token bigint      NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, tick, manual)
);
