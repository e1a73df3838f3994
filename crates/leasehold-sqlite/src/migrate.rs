//! Schema migrations, embedded at build time from `migrations/sqlite`.

use sqlx::SqlitePool;
use sqlx::migrate::{MigrateError, Migrator};

use leasehold_core::Error;

/// leasehold's own migrations table, apart from the application's.
pub const MIGRATIONS_TABLE: &str = "leasehold_migrations";

/// The migrator for leasehold's tables.
pub fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("../../migrations/sqlite");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m
}

/// Tries before giving up when another process migrates the same file at the same moment.
const TRIES: u32 = 5;

/// Applies every migration this build knows and that the database lacks.
///
/// SQLite has no advisory lock and sqlx applies each migration in its own transaction, so two processes
/// opening a new file together may both start the same migration: one commits, the other fails and
/// rolls back whole. Trying again then finds the migration applied.
pub async fn run(pool: &SqlitePool) -> Result<(), Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        match migrator().run(pool).await {
            Ok(()) => return Ok(()),
            Err(e @ (MigrateError::VersionMissing(_) | MigrateError::VersionMismatch(_))) => {
                return Err(migrate_error(e));
            }
            Err(e) if tries >= TRIES => return Err(migrate_error(e)),
            Err(e) => {
                tracing::debug!(error = %e, "migrating raced another process; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(tries))).await;
            }
        }
    }
}

/// The latest migration this build knows.
pub fn latest_version() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

fn migrate_error(e: MigrateError) -> Error {
    match e {
        MigrateError::VersionMissing(v) => Error::schema_from_newer_version(v, latest_version()),
        MigrateError::VersionMismatch(v) => Error::schema_mismatch(v),
        other => Error::database(other),
    }
}
