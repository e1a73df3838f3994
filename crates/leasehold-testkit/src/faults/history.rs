//! The history of a fault run, recorded by the store itself: a trigger on `leasehold.tasks` logs every
//! claim (a new token), renewal (a later expiry under the same token) and end of a lease (release,
//! completion, retry, discard) with the server's `clock_timestamp()`; the protected effects and the
//! workers' own view of each attempt come from the tables the test worker writes; the harness adds
//! the faults it injected. The checker (`check.rs`) reads nothing else.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

/// What happened to a lease, as the store saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A claim: a new token.
    Claim,
    /// A renewal: a later expiry under the same token.
    Renew,
    /// The lease ended: released, completed, retried, cancelled or discarded.
    End,
}

/// One logged change of a task's lease.
#[derive(Clone, Debug)]
pub struct Event {
    /// Order of logging.
    pub seq: i64,
    /// Store time, ms since the epoch.
    pub at_ms: i64,
    /// The task.
    pub task: Uuid,
    /// Claim, renewal or end.
    pub kind: EventKind,
    /// The token the row carries after the change (for an end: the token that ended).
    pub fence: i64,
    /// The state after the change.
    pub state: String,
    /// The lease's expiry after the change, ms.
    pub expires_ms: Option<i64>,
    /// A claim made by an enqueue for a waiting worker (a hand-off).
    pub handoff: bool,
}

/// A protected effect that committed.
#[derive(Clone, Debug)]
pub struct Effect {
    /// The task.
    pub task: Uuid,
    /// The token it was written under.
    pub fence: i64,
    /// The worker process.
    pub worker: String,
    /// Store time, ms.
    pub at_ms: i64,
}

/// A fault the harness injected.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Store time when it began, ms.
    pub at_ms: i64,
    /// `kill`, `pause`, `short_pause`, `terminate`, `restart`, `pin`.
    pub kind: &'static str,
    /// The worker process it hit, if any.
    pub worker: Option<String>,
    /// How long it lasted.
    pub duration_ms: i64,
}

/// Everything the checker reads.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Lease changes, in logging order.
    pub events: Vec<Event>,
    /// Of the claims among them, those made by an enqueue for a waiting worker (hand-offs).
    pub handoffs: usize,
    /// Effects that committed.
    pub effects: Vec<Effect>,
    /// Each attempt as its worker saw it.
    pub attempts: Vec<crate::history::AttemptRow>,
    /// Faults injected.
    pub faults: Vec<Fault>,
    /// Every task with its final state.
    pub tasks: HashMap<Uuid, String>,
    /// When a job saw its cancellation: (task, token, ms on the machine's clock, which is the store's).
    pub cancellations: Vec<(Uuid, i64, i64)>,
}

type EventRow = (i64, i64, Uuid, String, i64, String, Option<i64>);
type AttemptRaw = (Uuid, String, i64, i64, Option<bool>, Option<String>);

/// Installs the lease log on a database (after leasehold's migrations).
pub async fn install(pool: &PgPool) {
    sqlx::raw_sql(
        r#"
CREATE TABLE IF NOT EXISTS lease_log (
    seq        bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    task_id    uuid NOT NULL,
    kind       text NOT NULL,
    fence      bigint NOT NULL,
    state      text NOT NULL,
    expires_at timestamptz
);
CREATE OR REPLACE FUNCTION lease_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- a task handed to a waiting worker by its enqueue: claimed as it was inserted
        IF NEW.fence IS NOT NULL THEN
            INSERT INTO lease_log (task_id, kind, fence, state, expires_at)
            VALUES (NEW.id, 'handoff', NEW.fence, NEW.state, NEW.lease_expires_at);
        END IF;
    ELSIF NEW.fence IS DISTINCT FROM OLD.fence AND NEW.fence IS NOT NULL THEN
        INSERT INTO lease_log (task_id, kind, fence, state, expires_at)
        VALUES (NEW.id, 'claim', NEW.fence, NEW.state, NEW.lease_expires_at);
    ELSIF OLD.state = 'running' AND NEW.state <> 'running' THEN
        INSERT INTO lease_log (task_id, kind, fence, state, expires_at)
        VALUES (NEW.id, 'end', OLD.fence, NEW.state, NULL);
    ELSIF NEW.state = 'running' AND NEW.lease_expires_at IS DISTINCT FROM OLD.lease_expires_at THEN
        INSERT INTO lease_log (task_id, kind, fence, state, expires_at)
        VALUES (NEW.id, 'renew', NEW.fence, NEW.state, NEW.lease_expires_at);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS lease_log_change ON leasehold.tasks;
CREATE TRIGGER lease_log_change AFTER INSERT OR UPDATE ON leasehold.tasks
    FOR EACH ROW EXECUTE FUNCTION lease_log_change();
"#,
    )
    .execute(pool)
    .await
    .expect("installing the lease log");
}

/// Reads the history back (the faults are the harness's own).
pub async fn load(pool: &PgPool, faults: Vec<Fault>) -> History {
    let ms = "(extract(epoch FROM {c}) * 1000)::bigint";
    let q = |c: &str| ms.replace("{c}", c);
    let events: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT seq, {}, task_id, kind, fence, state, {} FROM lease_log ORDER BY seq",
        q("at"),
        q("expires_at")
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let handoffs = events.iter().filter(|e| e.3 == "handoff").count();
    let events = events
        .into_iter()
        .map(|(seq, at_ms, task, kind, fence, state, expires_ms)| Event {
            seq,
            at_ms,
            task,
            handoff: kind == "handoff",
            kind: match kind.as_str() {
                "claim" | "handoff" => EventKind::Claim,
                "renew" => EventKind::Renew,
                _ => EventKind::End,
            },
            fence,
            state,
            expires_ms,
        })
        .collect();
    let effects: Vec<(Uuid, i64, Option<String>, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT task_id, fence, worker, {} FROM effects", q("applied_at"))))
            .fetch_all(pool)
            .await
            .unwrap();
    let effects = effects
        .into_iter()
        .map(|(task, fence, worker, at_ms)| Effect { task, fence, worker: worker.unwrap_or_default(), at_ms })
        .collect();
    let attempts: Vec<AttemptRaw> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT task_id, worker, fence, {}, cancelled, completion FROM attempts ORDER BY started_at",
        q("started_at")
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let attempts = attempts
        .into_iter()
        .map(|(task_id, worker, fence, started_ms, cancelled, completion)| crate::history::AttemptRow {
            task_id,
            worker,
            fence,
            started_ms,
            cancelled,
            completion,
        })
        .collect();
    let cancellations: Vec<(Uuid, i64, i64)> =
        sqlx::query_as("SELECT task_id, fence, cancelled_ms FROM attempts WHERE cancelled_ms IS NOT NULL")
            .fetch_all(pool)
            .await
            .unwrap();
    let tasks: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, state FROM leasehold.tasks").fetch_all(pool).await.unwrap();
    History { events, handoffs, effects, attempts, faults, tasks: tasks.into_iter().collect(), cancellations }
}
