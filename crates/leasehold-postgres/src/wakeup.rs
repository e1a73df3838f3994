//! LISTEN/NOTIFY wake-up hints, sent on demand: only while a worker announced that it waits.

use std::future::Future;
use std::pin::Pin;

use sqlx::postgres::PgListener;

use std::time::Duration;

use leasehold_core::params::duration_ms;
use leasehold_core::{Result, Wakeup, check_names};

use crate::{WAKEUP_CHANNEL, db};

/// A dedicated listening connection. sqlx reconnects it on the next `recv` after a failure; a
/// notification sent while it was down is lost, which polling covers.
pub(crate) struct PgWakeup {
    pub(crate) listener: PgListener,
    /// This subscription's name in `leasehold.waiting`.
    waiter: String,
}

impl PgWakeup {
    pub(crate) async fn listen(pool: &sqlx::PgPool) -> Result<Self> {
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.listen(WAKEUP_CHANNEL).await.map_err(db)?;
        Ok(Self { listener, waiter: uuid::Uuid::now_v7().simple().to_string() })
    }
}

impl Wakeup for PgWakeup {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>> {
        Box::pin(async move {
            let n = self.listener.recv().await.map_err(db)?;
            Ok(n.payload().to_owned())
        })
    }

    /// Enqueues notify only while a worker waits on their queue: the announcement goes over the
    /// listening connection itself, so it needs none from the pool.
    fn announce<'a>(
        &'a mut self,
        queues: &'a [String],
        ttl: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            check_names("queue name", queues)?;
            sqlx::query(include_str!("sql/wakeup_announce.sql"))
                .bind(queues)
                .bind(duration_ms(ttl))
                .bind(&self.waiter)
                .execute(&mut self.listener)
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn withdraw(&mut self) -> Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        Box::pin(async move {
            sqlx::query(include_str!("sql/wakeup_withdraw.sql"))
                .bind(&self.waiter)
                .execute(&mut self.listener)
                .await
                .map_err(db)?;
            Ok(())
        })
    }
}
