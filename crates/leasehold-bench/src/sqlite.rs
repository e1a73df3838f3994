//! SQLite: leasehold on a temporary file, against SQLite's own limit (`sqlite_limit.rs`) measured in
//! the same run on another temporary file. Both files use WAL with `synchronous = FULL`, leasehold's
//! default, so every commit is durable.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use leasehold::sqlite::SqliteStore;

use crate::framework::Finished;
use crate::report::{Figures, key};
use crate::sqlite_limit as limit;
use crate::{Profile, Res, SQLITE_CLIENTS, TIMEOUT, framework};

/// Every pass on fresh files: SQLite's limit and leasehold, step by step, in an order that alternates
/// with the pass. Answers a line about the SQLite library for the report.
pub(crate) async fn run(p: &Profile, figs: &mut Figures) -> Res<String> {
    let raw_path = temp_file("limit");
    let lh_path = temp_file("leasehold");
    let mut version = String::new();
    for pass in 1..=p.passes {
        let step = |what: &str| eprintln!("[sqlite pass {pass}/{}] {what}", p.passes);
        remove(&raw_path);
        remove(&lh_path);

        let raw = limit::pool(&raw_path).await?;
        sqlx::raw_sql(limit::SCHEMA).execute(&raw).await?;
        version = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&raw).await?;
        let store = SqliteStore::open(&lh_path).await?;

        both!(
            pass,
            {
                step("limit: INSERT of 1,000 rows per statement, then claim 100 + complete until empty");
                figs.put(key::SQ_RAW_BATCH, limit::insert_batches(&raw, p.sqlite_drain_tasks).await?);
                figs.put(key::SQ_RAW_DRAIN, limit::claim(&raw, SQLITE_CLIENTS, TIMEOUT).await?);
            },
            {
                step("leasehold: enqueue_many in chunks of 1,000, then a worker drains them");
                figs.put(key::SQ_LH_BATCH, framework::batch_enqueue(&store, p.sqlite_drain_tasks).await?);
                figs.put(key::SQ_LH_DRAIN, framework::drain(&store, p.sqlite_drain_tasks, Finished::Kept).await?);
                clean(&raw, &store).await?;
                step("leasehold: the same with a worker that deletes the tasks it completes");
                framework::batch_enqueue(&store, p.sqlite_drain_tasks).await?;
                let drain = framework::drain(&store, p.sqlite_drain_tasks, Finished::Deleted);
                figs.put(key::SQ_LH_DRAIN_DELETING, drain.await?);
            }
        );
        clean(&raw, &store).await?;
        both!(
            pass,
            {
                step("limit: single-row INSERT, 1 client");
                figs.put(key::SQ_RAW_INSERT_1, limit::insert_single(&raw, p.phase).await?);
            },
            {
                step("leasehold: Client::enqueue, 1 client");
                figs.put(key::SQ_LH_ENQUEUE_1, framework::single_enqueue(&store, 1, p.phase).await?);
            }
        );
        clean(&raw, &store).await?;
        both!(
            pass,
            {
                step("limit: steady claim 100 + complete with a producer running");
                figs.put(key::SQ_RAW_STEADY, limit::steady(&raw, p.steady_warmup, p.steady).await?);
            },
            {
                step("leasehold: steady worker with a producer running");
                figs.put(key::SQ_LH_STEADY, framework::steady(&store, p.steady_warmup, p.steady).await?);
            }
        );
        clean(&raw, &store).await?;
        both!(
            pass,
            {
                step("limit: insert, in-process signal, claim of one");
                figs.put_latency(key::SQ_RAW_SIGNAL, limit::signal_floor(&raw, p.latency_samples).await?);
            },
            {
                step("leasehold: idle enqueue-to-start latency");
                figs.put_latency(key::SQ_LH_LATENCY, framework::idle_latency(&store, p.latency_samples).await?);
            }
        );
        clean(&raw, &store).await?;
        both!(
            pass,
            {
                step("limit: lease row acquire + release, 1 client");
                figs.put(key::SQ_RAW_LEASE_1, limit::lease_pairs(&raw, p.phase).await?);
            },
            {
                step("leasehold: leader lease acquire + release, 1 client");
                figs.put(key::SQ_LH_LEASE_1, framework::lease_pairs(&store, 1, p.phase).await?);
            }
        );
        clean(&raw, &store).await?;

        raw.close().await;
        store.pool().close().await;
    }
    remove(&raw_path);
    remove(&lh_path);
    Ok(format!("SQLite {version}: WAL, synchronous=FULL, on {}", std::env::temp_dir().display()))
}

/// Empties the limit's tables and leasehold's tasks between steps, so that no step finds another's
/// tasks waiting or pays for its rows.
async fn clean(raw: &sqlx::SqlitePool, store: &SqliteStore) -> Res<()> {
    sqlx::raw_sql("DELETE FROM jobs; DELETE FROM leases;").execute(raw).await?;
    sqlx::raw_sql("DELETE FROM leasehold_tasks; DELETE FROM leasehold_leaders;").execute(store.pool()).await?;
    Ok(())
}

/// `--drain-only N --sqlite-only`: five rounds of leasehold's drains of `N` tasks (keeping the tasks it
/// completes, then deleting them) and the limit's drain of as many, each on a fresh file, with the CPU
/// all took.
pub(crate) async fn drain_only(n: u64) -> Res<()> {
    let raw_path = temp_file("limit");
    let lh_path = temp_file("leasehold");
    for round in 1..=5 {
        for finished in [Finished::Kept, Finished::Deleted] {
            remove(&lh_path);
            let store = SqliteStore::open(&lh_path).await?;
            framework::batch_enqueue(&store, n).await?;
            let (ours, cpu) = crate::with_cpu(n, framework::drain(&store, n, finished)).await?;
            println!("drain {round}, completed tasks {finished:?}: {ours:.0} jobs/s{cpu}");
            store.pool().close().await;
        }
        remove(&raw_path);
        let raw = limit::pool(&raw_path).await?;
        sqlx::raw_sql(limit::SCHEMA).execute(&raw).await?;
        limit::insert_batches(&raw, n).await?;
        let (limit, cpu) = crate::with_cpu(n, limit::claim(&raw, SQLITE_CLIENTS, TIMEOUT)).await?;
        println!("  limit: claim 100 + complete of as many, 1 client: {limit:.0} jobs/s{cpu}");
        raw.close().await;
    }
    remove(&raw_path);
    remove(&lh_path);
    Ok(())
}

/// `--latency-only N --sqlite-only`: `N` rounds of the in-process wake-up floor and leasehold's idle
/// latency on SQLite, in alternating order, each on fresh files; the medians of the rounds' p50s.
pub(crate) async fn latency_only(rounds: u64) -> Res<()> {
    let raw_path = temp_file("limit");
    let lh_path = temp_file("leasehold");
    let samples = crate::DEFAULT_PROFILE.latency_samples;
    let (mut floor, mut ours) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        remove(&raw_path);
        remove(&lh_path);
        let raw = limit::pool(&raw_path).await?;
        sqlx::raw_sql(limit::SCHEMA).execute(&raw).await?;
        let store = SqliteStore::open(&lh_path).await?;
        both!(round, { floor.push(limit::signal_floor(&raw, samples).await?.p50) }, {
            ours.push(framework::idle_latency(&store, samples).await?.p50)
        });
        raw.close().await;
        store.pool().close().await;
        let (f, o) = (floor[floor.len() - 1], ours[ours.len() - 1]);
        println!("round {round}: floor p50 {f:.3} ms, leasehold p50 {o:.3} ms, {:.2}x", o / f);
    }
    remove(&raw_path);
    remove(&lh_path);
    let (f, o) = (crate::timing::median(&floor), crate::timing::median(&ours));
    println!("medians: floor p50 {f:.3} ms, leasehold p50 {o:.3} ms, {:.2}x", o / f);
    Ok(())
}

/// A temporary database file of this process.
pub(crate) fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leasehold-bench-{}-{name}.sqlite", std::process::id()))
}

/// Removes a database file with its WAL and shared-memory files.
pub(crate) fn remove(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = OsString::from(path.as_os_str());
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}
