//! Schema migrations, embedded at build time from `migrations/postgres`.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use leasehold_core::Error;

/// The schema every leasehold object lives in.
pub const SCHEMA: &str = "leasehold";
/// leasehold's own migrations table, apart from the host application's.
pub const MIGRATIONS_TABLE: &str = "leasehold._sqlx_migrations";

/// The migrator for leasehold's schema: its own table, the schema created first, sqlx's advisory lock
/// held while it runs so that concurrent starts migrate once.
pub fn migrator() -> Migrator {
    let mut m = sqlx::migrate!("../../migrations/postgres");
    m.dangerous_set_table_name(MIGRATIONS_TABLE);
    m.create_schema(SCHEMA);
    m
}

/// Applies every migration this build knows and that the database lacks.
pub async fn run(pool: &PgPool) -> Result<(), Error> {
    migrator().run(pool).await.map_err(migrate_error)
}

/// The latest migration this build knows.
pub fn latest_version() -> i64 {
    migrator().iter().map(|m| m.version).max().unwrap_or(0)
}

pub(crate) fn migrate_error(e: MigrateError) -> Error {
    match e {
        MigrateError::VersionMissing(v) => Error::schema_from_newer_version(v, latest_version()),
        MigrateError::VersionMismatch(v) => Error::schema_mismatch(v),
        other => Error::database(other),
    }
}
