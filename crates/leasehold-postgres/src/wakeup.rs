//! LISTEN/NOTIFY wake-up hints, sent on demand: only while a worker announced that it waits; and the
//! tasks handed to a waiting worker by their enqueue (task_insert_handoff.sql), on its own channel.

use std::future::Future;
use std::pin::Pin;

use sqlx::postgres::PgListener;

use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use leasehold_core::params::duration_ms;
use leasehold_core::{
    ClaimedTask, FencingToken, Handoff, HandoffOffer, Hint, Result, TaskId, TaskLease, Wakeup, check_names,
    check_no_nul,
};

use crate::{WAKEUP_CHANNEL, db};

/// A dedicated listening connection, used once. When it is lost, or a statement on it fails, every later
/// call answers an error and the worker subscribes again, on a new connection under a new waiter name.
/// The old waiter's offers are closed first, from the pool, where the server can still be reached: a
/// task handed to the old waiter before that (at most one per queue and offer) is lost with its
/// notification and taken over when its lease expires; a hint sent meanwhile is lost, which polling
/// covers. (sqlx would reconnect the listener on its next use under the same name, silently, leaving
/// its offers open to hand-offs lost in the gap: its eager reconnection is turned off, and a lost
/// listener is not used again.)
pub(crate) struct PgWakeup {
    pub(crate) listener: PgListener,
    pool: sqlx::PgPool,
    /// This subscription's name in `leasehold.waiting`.
    waiter: String,
    /// Set once the connection was lost or a statement on it failed.
    lost: bool,
}

impl PgWakeup {
    pub(crate) async fn listen(pool: &sqlx::PgPool) -> Result<Self> {
        let waiter = uuid::Uuid::now_v7().simple().to_string();
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.eager_reconnect(false);
        listener.listen_all([WAKEUP_CHANNEL, &handoff_channel(&waiter)]).await.map_err(db)?;
        Ok(Self { listener, pool: pool.clone(), waiter, lost: false })
    }

    /// Marks the subscription lost and closes its offers, as far as the server can be reached.
    async fn lose(&mut self, why: leasehold_core::Error) -> leasehold_core::Error {
        if !self.lost {
            self.lost = true;
            let close =
                sqlx::query("UPDATE leasehold.waiting SET offer = NULL WHERE waiter = $1 AND offer IS NOT NULL")
                    .bind(&self.waiter)
                    .execute(&self.pool);
            if let Err(e) = tokio::time::timeout(CLOSE_TIMEOUT, close)
                .await
                .map_err(|_| "timed out".to_owned())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(error = %e, "closing a lost subscription's offers failed; they run out by themselves");
            }
        }
        why
    }

    fn check(&self) -> Result<()> {
        if self.lost {
            return Err(leasehold_core::Error::Unavailable("the listening connection was lost".into()));
        }
        Ok(())
    }
}

/// How long closing a lost subscription's offers may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel a waiter's hand-offs come on (task_insert_handoff.sql names it the same way).
fn handoff_channel(waiter: &str) -> String {
    format!("leasehold_handoff_{waiter}")
}

/// Decodes a hand-off's notification: a JSON object built by task_insert_handoff.sql.
fn decode_handoff(payload: &str) -> Option<Handoff> {
    let v: Value = serde_json::from_str(payload).ok()?;
    let int = |k: &str| v.get(k).and_then(Value::as_i64);
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let task = ClaimedTask {
        lease: TaskLease { task_id: TaskId(text("id")?.parse().ok()?), fence: FencingToken(int("fence")?) },
        kind: text("kind")?,
        queue: text("queue")?,
        payload: v.get("payload")?.clone(),
        attempt: 1,
        max_attempts: i32::try_from(int("max_attempts")?).ok()?,
        lease_ttl: Duration::from_millis(u64::try_from(int("lease_ttl_ms")?).ok()?),
        run_at: DateTime::from_timestamp_micros(int("run_at_us")?)?,
        taken_over: false,
    };
    Some(Handoff { offer: u64::try_from(int("offer")?).ok()?, task })
}

impl Wakeup for PgWakeup {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<Hint>> + Send + '_>> {
        Box::pin(async move {
            self.check()?;
            loop {
                let n = match self.listener.try_recv().await {
                    Ok(Some(n)) => n,
                    Ok(None) => {
                        return Err(self
                            .lose(leasehold_core::Error::Unavailable("the listening connection was lost".into()))
                            .await);
                    }
                    Err(e) => return Err(self.lose(db(e)).await),
                };
                if n.channel() == WAKEUP_CHANNEL {
                    return Ok(Hint::Available(n.payload().to_owned()));
                }
                match decode_handoff(n.payload()) {
                    Some(h) => return Ok(Hint::Handoff(Box::new(h))),
                    // not from this version's statement: the task is taken over when its lease expires
                    None => tracing::warn!(payload = n.payload(), "a hand-off that could not be read"),
                }
            }
        })
    }

    /// Enqueues notify only while a worker waits on their queue: the announcement goes over the
    /// listening connection itself, so it needs none from the pool.
    fn announce<'a>(
        &'a mut self,
        queues: &'a [String],
        ttl: Duration,
        offer: Option<&'a HandoffOffer>,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            check_names("queue name", queues)?;
            // PostgreSQL keeps no NUL in text: such a queue cannot hold a task here either
            queues.iter().try_for_each(|q| check_no_nul("queue name", q))?;
            self.check()?;
            let lease_ms = offer.map(|o| i32::try_from(duration_ms(o.lease_ttl)).unwrap_or(i32::MAX));
            let announce = sqlx::query(include_str!("sql/wakeup_announce.sql"))
                .bind(queues)
                .bind(duration_ms(ttl))
                .bind(&self.waiter)
                .bind(offer.map(|o| i64::try_from(o.number).unwrap_or(i64::MAX)))
                .bind(offer.map(|o| o.worker_id.as_str()))
                .bind(lease_ms)
                .bind(offer.map(|o| i32::try_from(duration_ms(o.max_age)).unwrap_or(i32::MAX)));
            match announce.execute(&mut self.listener).await {
                Ok(_) => Ok(()),
                // the connection may be gone: not used again (see PgWakeup)
                Err(e) => Err(self.lose(db(e)).await),
            }
        })
    }

    fn takes_offers(&self) -> bool {
        true
    }

    fn withdraw(&mut self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            let withdraw = sqlx::query(include_str!("sql/wakeup_withdraw.sql")).bind(&self.waiter);
            // a lost listener is not used again: the pool reaches the server if anything does
            if self.lost { withdraw.execute(&self.pool).await } else { withdraw.execute(&mut self.listener).await }
                .map_err(db)?;
            Ok(())
        })
    }
}
