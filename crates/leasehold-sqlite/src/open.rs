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

/// Tries at opening a file that another connection holds locked at that very moment (several
/// processes opening a new file together: switching it to WAL and stamping it are writes).
const OPEN_TRIES: u32 = 6;

/// Opens (creating if needed) the file at `path` in WAL mode, and refuses a file that belongs to
/// another application.
pub(crate) async fn open_checked(path: &Path, opts: &SqliteOptions) -> Result<SqlitePool> {
    let mut tries = 0;
    loop {
        tries += 1;
        let opened = async {
            let pool = open_pool(path, opts).await?;
            let id = stamp_owner(&pool).await?;
            Ok::<_, sqlx::Error>((pool, id))
        }
        .await;
        match opened {
            Ok((pool, id)) if id == APPLICATION_ID => return Ok(pool),
            Ok((_, other)) => {
                return Err(Error::Schema(format!(
                    "{} belongs to another application (its SQLite application_id is {other:#x}, leasehold's is \
                     {APPLICATION_ID:#x}); leasehold will not write to it",
                    path.display()
                )));
            }
            Err(e) if is_busy(&e) && tries < OPEN_TRIES => {
                tokio::time::sleep(Duration::from_millis(25 * u64::from(tries))).await;
            }
            Err(e) => return Err(open_error(path, e)),
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    primary_code(e) == Some(5) // SQLITE_BUSY
}

fn primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff),
        _ => None,
    }
}

/// Rows a statement's thread may hand over before the task reading them has taken the first ones.
/// sqlx runs each SQLite connection on a thread of its own, which passes rows to the reading task
/// through a bounded channel (50 rows by default): an answer of 512 rows (a claim's, when it answered a
/// row per task; a renewal's or a release's still does, and a batch's completion when it carries results,
/// deletes its tasks or was not completed whole) stopped and restarted that thread about ten times, each a
/// sleep and a wake-up of both sides.
const ROW_BUFFER: usize = 1_024;

/// Opens (creating if needed) the file at `path` in WAL mode.
async fn open_pool(path: &Path, opts: &SqliteOptions) -> sqlx::Result<SqlitePool> {
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if opts.synchronous_full { SqliteSynchronous::Full } else { SqliteSynchronous::Normal })
        .busy_timeout(opts.busy_timeout)
        .foreign_keys(true)
        .row_buffer_size(ROW_BUFFER);
    // No liveness ping before each use: a connection to a local file is not lost the way a network one
    // is, and sqlx's SQLite connection runs on a thread of its own, so each ping is a round trip to
    // that thread before every statement the store sends through the pool.
    SqlitePoolOptions::new()
        .max_connections(opts.max_connections)
        .test_before_acquire(false)
        .connect_with(connect)
        .await
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

/// The file's `application_id`, after stamping leasehold's into a file that has none.
async fn stamp_owner(pool: &SqlitePool) -> sqlx::Result<i32> {
    let id: i32 = sqlx::query_scalar("PRAGMA application_id").fetch_one(pool).await?;
    if id != 0 {
        return Ok(id);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA application_id = {APPLICATION_ID}"))).execute(pool).await?;
    Ok(APPLICATION_ID)
}

/// Turns the errors of opening a file into what they mean.
fn open_error(path: &Path, e: sqlx::Error) -> Error {
    let shown = path.display();
    match primary_code(&e) {
        Some(5) => Error::Connect(format!("{shown} stayed locked by another connection: {e}")),
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
