//! LISTEN/NOTIFY wake-up hints.

use std::future::Future;
use std::pin::Pin;

use sqlx::postgres::PgListener;

use leasehold_core::{Result, Wakeup};

use crate::{WAKEUP_CHANNEL, db};

/// A dedicated listening connection. sqlx reconnects it on the next `recv` after a failure; a
/// notification sent while it was down is lost, which polling covers.
pub(crate) struct PgWakeup {
    pub(crate) listener: PgListener,
}

impl PgWakeup {
    pub(crate) async fn listen(pool: &sqlx::PgPool) -> Result<Self> {
        let mut listener = PgListener::connect_with(pool).await.map_err(db)?;
        listener.listen(WAKEUP_CHANNEL).await.map_err(db)?;
        Ok(Self { listener })
    }
}

impl Wakeup for PgWakeup {
    fn recv(&mut self) -> Pin<Box<dyn Future<Output = Result<String>> + Send + '_>> {
        Box::pin(async move {
            let n = self.listener.recv().await.map_err(db)?;
            Ok(n.payload().to_owned())
        })
    }
}
