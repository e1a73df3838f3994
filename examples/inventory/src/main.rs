//! Run with: cargo run -p example-inventory
//!
//! An inventory that stays exact under crashes. Products have stock; orders arrive as tasks, some
//! submitted twice with the same idempotency key (suppressed at enqueue), some replayed under another key
//! (stopped by the order's effect record). Several worker processes apply them with version checks
//! inside transactional completion, while this program SIGKILLs some of them and SIGSTOPs others past
//! their lease. At the end it checks: final stock = initial stock - accepted orders, exactly; stock never
//! negative; no order applied twice; every order applied or rejected for lack of stock with a recorded
//! reason. It prints its figures and exits non-zero on any violation.
//!
//! With no configuration it runs on a new SQLite file, `inventory.sqlite`; `DATABASE_URL=postgres://...`
//! runs it on PostgreSQL. `ORDERS`, `WORKERS`, `KILLS`, `PAUSES` and `SEED` size the run.

mod run;
mod shop;
mod worker;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEASEHOLD_LOG").unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // the orchestrator starts copies of itself as worker processes, named by WORKER_NAME
    let outcome = if std::env::var_os("WORKER_NAME").is_some() { worker::run().await } else { run::run().await };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
