//! Opening a database file: bad input gets a typed error and loses nothing.

use std::path::PathBuf;

use leasehold_core::{Error, NewTask, TaskStore};
use leasehold_sqlite::SqliteStore;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use uuid::Uuid;

struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("leasehold-open-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path).create_if_missing(true)).await.unwrap()
}

#[tokio::test]
async fn creates_a_new_file_and_reopens_it() {
    let dir = Scratch::new();
    let path = dir.0.join("queue.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let id = store.task_insert(NewTask::new("k", serde_json::json!(1))).await.unwrap();
    drop(store);
    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.task_get(id).await.unwrap().kind, "k");
}

#[tokio::test]
async fn an_unwritable_path_is_a_connect_error() {
    let dir = Scratch::new();
    let path = dir.0.join("no-such-folder").join("queue.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    assert!(err.to_string().contains("no-such-folder"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = Scratch::new();
    let path = dir.0.join("notes.txt");
    let text = "these are someone's notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(&err, Error::Schema(m) if m.contains("is not a SQLite database")), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file was changed");
}

#[tokio::test]
async fn another_applications_database_is_refused() {
    let dir = Scratch::new();
    let path = dir.0.join("app.db");
    let mut c = raw(&path).await;
    sqlx::raw_sql("PRAGMA application_id = 1234; CREATE TABLE invoices (id INTEGER PRIMARY KEY);")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(&err, Error::Schema(m) if m.contains("belongs to another application")), "{err:?}");
    let mut c = raw(&path).await;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&mut c).await.unwrap();
    assert_eq!(tables, vec!["invoices".to_owned()], "leasehold wrote to a file that is not its own");
}

#[tokio::test]
async fn an_application_file_without_an_id_can_be_shared() {
    let dir = Scratch::new();
    let path = dir.0.join("shared.db");
    let mut c = raw(&path).await;
    sqlx::raw_sql("CREATE TABLE stock (sku TEXT PRIMARY KEY, n INTEGER)").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    SqliteStore::open(&path).await.unwrap();
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_leasehold_is_refused() {
    let dir = Scratch::new();
    let path = dir.0.join("queue.db");
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::query(
        "INSERT INTO leasehold_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    drop(store);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(&err, Error::Schema(m) if m.contains("newer leasehold")), "{err:?}");
}

#[tokio::test]
async fn an_in_memory_url_is_refused() {
    let err = SqliteStore::connect("sqlite::memory:").await.unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_openers_of_a_new_file_all_succeed() {
    let dir = Scratch::new();
    let path = dir.0.join("shared.db");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let path = path.clone();
        set.spawn(async move { SqliteStore::open(&path).await.map(drop) });
    }
    for r in set.join_all().await {
        r.unwrap();
    }
}
