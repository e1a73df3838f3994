//! Opening a database file, and refusing one that leasehold must not use.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use leasehold_core::{Error, Result};

/// The `PRAGMA application_id` leasehold writes into the files it creates ("LSHD"). A file carrying
/// another application's id is refused.
pub const APPLICATION_ID: i32 = 0x4C53_4844;

/// How a database file is opened.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a statement waits for another connection's write lock before failing.
    pub busy_timeout: Duration,
    /// Connections in the pool.
    pub max_connections: u32,
    /// `FULL` (the default) survives power loss; `NORMAL` survives a crash of the process only.
    pub synchronous_full: bool,
}

impl SqliteOptions {
    /// Default busy timeout.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default pool size.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            synchronous_full: true,
        }
    }
}

/// Opens (creating if needed) the file at `path` in WAL mode.
pub(crate) async fn open_pool(path: &Path, opts: &SqliteOptions) -> Result<SqlitePool> {
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if opts.synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
        .busy_timeout(opts.busy_timeout)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(opts.max_connections)
        .connect_with(connect)
        .await
        .map_err(|e| open_error(path, e))
}

/// The file a `sqlite:` URL names.
pub(crate) fn url_path(url: &str) -> Result<PathBuf> {
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::InvalidConfig(format!("not a SQLite URL ({url}): {e}")))?;
    let path = opts.get_filename().to_path_buf();
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if in_memory || path.as_os_str().is_empty() {
        return Err(Error::InvalidConfig(
            "an in-memory SQLite database cannot be shared by a pool: name a file".into(),
        ));
    }
    Ok(path)
}

/// Refuses a file that belongs to another application.
pub(crate) async fn check_owner(pool: &SqlitePool, path: &Path) -> Result<()> {
    let id: i32 = sqlx::query_scalar("PRAGMA application_id").fetch_one(pool).await.map_err(|e| open_error(path, e))?;
    match id {
        0 => {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA application_id = {APPLICATION_ID}")))
                .execute(pool)
                .await
                .map_err(|e| open_error(path, e))?;
            Ok(())
        }
        APPLICATION_ID => Ok(()),
        other => Err(Error::Schema(format!(
            "{} belongs to another application (its SQLite application_id is {other:#x}, leasehold's is \
             {APPLICATION_ID:#x}); leasehold will not write to it",
            path.display()
        ))),
    }
}

/// Turns the errors of opening a file into what they mean.
pub(crate) fn open_error(path: &Path, e: sqlx::Error) -> Error {
    let code = match &e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff),
        _ => None,
    };
    let shown = path.display();
    match code {
        // SQLITE_NOTADB
        Some(26) => Error::Schema(format!("{shown} is not a SQLite database")),
        // SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_PERM, SQLITE_IOERR
        Some(14 | 8 | 3 | 10) => Error::Connect(format!("cannot open {shown} for writing: {e}")),
        _ => match e {
            sqlx::Error::Io(io) => Error::Connect(format!("cannot open {shown}: {io}")),
            other => Error::database(other),
        },
    }
}
