//! The shop: products with stock, and the `order` job that applies one order exactly once.
//!
//! One attempt, in one transaction:
//! 1. claim the effect key `order:<id>` ([`leasehold::once`]): a replay of an order that another task
//!    already applied finds the recorded decision and changes nothing;
//! 2. read the product's stock and version; reject the order if the stock is short, otherwise take the
//!    quantity with a compare-and-set on the version ([`leasehold::guard::expect_version`]), retried
//!    with backoff on conflict ([`leasehold::guard::retry_on_conflict`]);
//! 3. record the order and the decision, and complete the task fenced by its token
//!    (transactional completion): a holder whose lease was taken over rolls everything back.
//!
//! The `CHECK (stock >= 0)` constraint makes "never negative" hold at every instant, not only at the end;
//! a write that would break it fails, and the end check would see the order stuck.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use leasehold::guard::{VersionRetry, expect_version, retry_on_conflict};
use leasehold::sqlite::SqliteStore;
use leasehold::{BoxError, Job, JobContext, JobOptions, JobResult, Once, Outcome};

/// Where the shop's tables live.
#[derive(Clone)]
pub(crate) enum Db {
    /// PostgreSQL.
    Pg(PgPool),
    /// SQLite.
    Sqlite(SqliteStore),
}

/// The shop's tables, created fresh.
pub(crate) const SCHEMA: &str = "
DROP TABLE IF EXISTS inventory_orders;
DROP TABLE IF EXISTS inventory_products;
CREATE TABLE inventory_products (
    sku     TEXT PRIMARY KEY,
    stock   BIGINT NOT NULL CHECK (stock >= 0),
    version BIGINT NOT NULL
);
-- no unique key on order_id, on purpose: an order applied twice would show as two rows, and the check
-- at the end would see it rather than a constraint hiding it
CREATE TABLE inventory_orders (
    order_id  TEXT NOT NULL,
    sku       TEXT NOT NULL,
    qty       BIGINT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason    TEXT,
    fence     BIGINT NOT NULL,
    conflicts BIGINT NOT NULL
);
CREATE INDEX inventory_orders_id_idx ON inventory_orders (order_id);";

/// What became of an order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum Decision {
    /// The stock was taken.
    Applied {
        /// Stock left afterwards.
        stock_left: i64,
    },
    /// Not enough stock.
    Rejected {
        /// Why, as recorded.
        reason: String,
    },
}

/// An order: take `qty` of `sku`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Order {
    /// The order's own id: its effect key.
    pub(crate) order_id: String,
    /// The product.
    pub(crate) sku: String,
    /// How many.
    pub(crate) qty: i64,
    /// How long the work takes before committing (to widen the windows faults fall into).
    pub(crate) work_ms: u64,
}

/// The result stored on an order's task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Applied {
    /// The decision.
    pub(crate) decision: Decision,
    /// Whether this task found the order applied by another task (a replay) and changed nothing.
    pub(crate) replay: bool,
}

impl Job for Order {
    const KIND: &'static str = "order";
    type State = Db;

    fn options() -> JobOptions {
        JobOptions { queue: Some("orders".into()), max_attempts: Some(50), ..JobOptions::default() }
    }

    async fn run(self, ctx: JobContext<Db>) -> JobResult {
        tokio::time::sleep(Duration::from_millis(self.work_ms)).await;
        let policy = VersionRetry { attempts: 20, ..VersionRetry::default() };
        retry_on_conflict(&policy, |attempt| apply(&self, &ctx, attempt)).await?;
        // completed inside the transaction: the worker sees it and does not complete again
        Ok(Outcome::Complete)
    }
}

/// One try at applying the order, in one transaction. The same steps on both backends.
macro_rules! apply_in {
    ($backend:ident, $tx:expr, $order:expr, $ctx:expr, $attempt:expr) => {{
        let (tx, order, ctx) = ($tx, $order, $ctx);
        let lease = ctx.lease();
        let key = format!("order:{}", order.order_id);
        let (decision, replay) = match leasehold::$backend::effect_begin::<Decision>(tx, &key, Some(lease)).await? {
            Once::Done(decision) => (decision, true),
            Once::Fresh(effect) => {
                let (stock, version): (i64, i64) =
                    sqlx::query_as("SELECT stock, version FROM inventory_products WHERE sku = $1")
                        .bind(&order.sku)
                        .fetch_one(&mut **tx)
                        .await?;
                let decision = if stock < order.qty {
                    Decision::Rejected { reason: format!("insufficient stock: {} left, {} ordered", stock, order.qty) }
                } else {
                    // a read-modify-write: the new stock is computed here, so only the version check
                    // keeps a concurrent update from being lost
                    let done = sqlx::query(
                        "UPDATE inventory_products SET stock = $2, version = version + 1
                          WHERE sku = $1 AND version = $3",
                    )
                    .bind(&order.sku)
                    .bind(stock - order.qty)
                    .bind(version)
                    .execute(&mut **tx)
                    .await?;
                    expect_version(done.rows_affected(), format!("inventory_products/{}", order.sku), version)?;
                    Decision::Applied { stock_left: stock - order.qty }
                };
                let (status, reason) = match &decision {
                    Decision::Applied { .. } => ("applied", None),
                    Decision::Rejected { reason } => ("rejected", Some(reason.clone())),
                };
                sqlx::query(
                    "INSERT INTO inventory_orders (order_id, sku, qty, status, reason, fence, conflicts)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&order.order_id)
                .bind(&order.sku)
                .bind(order.qty)
                .bind(status)
                .bind(reason)
                .bind(lease.fence.0)
                .bind(i64::from($attempt) - 1)
                .execute(&mut **tx)
                .await?;
                leasehold::$backend::effect_record(tx, &effect, &decision).await?;
                (decision, false)
            }
        };
        let result = serde_json::to_value(Applied { decision, replay })?;
        leasehold::$backend::complete_in(&mut **tx, lease, Some(result)).await?;
        Ok::<(), BoxError>(())
    }};
}

async fn apply(order: &Order, ctx: &JobContext<Db>, attempt: u32) -> Result<(), BoxError> {
    match ctx.state() {
        Db::Pg(pool) => {
            let mut tx = pool.begin().await?;
            apply_in!(postgres, &mut tx, order, ctx, attempt)?;
            tx.commit().await?;
        }
        Db::Sqlite(store) => {
            let mut tx = store.begin().await?;
            apply_in!(sqlite, &mut tx, order, ctx, attempt)?;
            tx.commit().await?;
        }
    }
    Ok(())
}
