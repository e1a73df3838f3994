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

/// The oldest SQLite leasehold's statements run on: 3.44, for the ordered aggregate that writes a claim's
/// answer (`json_group_array(... ORDER BY ...)`). sqlx bundles a newer one unless it is built with
/// `sqlite-unbundled` against the system's library.
pub const MIN_SQLITE_VERSION: (u32, u32) = (3, 44);

/// Applies every migration this build knows and that the database lacks.
///
/// SQLite has no advisory lock and sqlx applies each migration in its own transaction, so two processes
/// opening a new file together may both start the same migration: one commits, the other fails and
/// rolls back whole. Trying again then finds the migration applied.
pub async fn run(pool: &SqlitePool) -> Result<(), Error> {
    let version: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(pool).await.map_err(crate::db)?;
    if older_than_needed(&version) {
        let (major, minor) = MIN_SQLITE_VERSION;
        return Err(Error::InvalidConfig(format!(
            "SQLite {version} is older than leasehold's statements need ({major}.{minor} or later): build sqlx with \
             its bundled SQLite"
        )));
    }
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

/// Whether `version` (as `sqlite_version()` answers it, "3.51.1") is older than [`MIN_SQLITE_VERSION`].
fn older_than_needed(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found < MIN_SQLITE_VERSION
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

#[cfg(test)]
mod tests {
    use super::older_than_needed;

    #[test]
    fn sqlite_before_3_44_is_refused() {
        for old in ["3.43.2", "3.42.0", "3.7.17", "2.8.17", ""] {
            assert!(older_than_needed(old), "{old}");
        }
        for new in ["3.44.0", "3.44", "3.51.1", "3.100.0", "4.0.0"] {
            assert!(!older_than_needed(new), "{new}");
        }
    }
}
