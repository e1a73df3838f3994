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

/// Applies every migration this build knows and that the database lacks.
pub async fn run(pool: &SqlitePool) -> Result<(), Error> {
    migrator().run(pool).await.map_err(migrate_error)
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
