//! Idempotent effects inside a handler: "the effect with this key happened, with this outcome",
//! recorded in the same transaction as the effect, so a retried or taken-over attempt skips the effect
//! and gets the stored outcome.
//!
//! ```ignore
//! let mut tx = pool.begin().await?;
//! let receipt: Receipt = match leasehold::postgres::effect_begin(&mut tx, &format!("charge:{order}"), Some(ctx.lease())).await? {
//!     Once::Done(receipt) => receipt,                 // an earlier attempt charged and committed
//!     Once::Fresh(key) => {
//!         let receipt = charge_in(&mut tx, order).await?; // the effect, in this transaction
//!         leasehold::postgres::effect_record(&mut tx, &key, &receipt).await?;
//!         receipt
//!     }
//! };
//! leasehold::postgres::complete_in(&mut tx, ctx.lease(), None).await?;
//! tx.commit().await?;
//! ```
//!
//! The key row is inserted when the effect is claimed, so a concurrent attempt with the same key waits
//! for this transaction: if it commits, the other finds the outcome; if it rolls back, the key is free.

/// Whether an effect still has to happen.
#[derive(Debug)]
pub enum Once<T> {
    /// Not yet: this transaction holds the key. Do the effect in it, then record the outcome.
    Fresh(EffectKey),
    /// It happened in a committed transaction; this is its recorded outcome.
    Done(T),
}

/// A key this transaction claimed for an effect.
#[derive(Debug)]
pub struct EffectKey(pub(crate) String);

impl EffectKey {
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Decodes what claiming a key found: nothing (fresh) or the recorded outcome.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    backend: &'static str,
    key: &str,
    found: Option<serde_json::Value>,
) -> leasehold_core::Result<Once<T>> {
    match found {
        None => {
            crate::telemetry::record::idempotency(backend, "effect", "new");
            Ok(Once::Fresh(EffectKey(key.to_owned())))
        }
        Some(outcome) => {
            crate::telemetry::record::idempotency(backend, "effect", "hit");
            Ok(Once::Done(serde_json::from_value(outcome)?))
        }
    }
}
