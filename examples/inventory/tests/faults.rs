//! The inventory example under faults (SIGKILL and SIGSTOP of worker processes past their lease,
//! duplicate submissions, replays, conflicting concurrent updates), on both stores. The example checks
//! its own invariants and exits non-zero on any violation; this test runs it and reads its verdict.

use std::process::Command;

use leasehold_testkit::pg::TestDb;
use leasehold_testkit::sqlite::TestFile;

const BIN: &str = env!("CARGO_BIN_EXE_example-inventory");

fn run(database_url: &str, scratch: &std::path::Path) {
    let out = Command::new(BIN)
        .current_dir(scratch)
        .env("DATABASE_URL", database_url)
        .env("ORDERS", "200")
        .env("WORKERS", "3")
        .env("KILLS", "3")
        .env("PAUSES", "2")
        .output()
        .expect("start the inventory example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the inventory example failed: {}", out.status);
    assert!(stdout.contains("all checks passed"), "no verdict in the output");
    assert!(stdout.contains("3 kills, 2 pauses"), "the faults were not all injected");
    // the faults must have hit work in progress, or the run proved nothing
    let figure = |label: &str| -> i64 {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no {label}"));
        line.trim_start()[label.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(figure("leases lost") > 0, "no fault hit a task in progress");
    assert!(figure("replays stopped") > 0, "no replay was exercised");
    assert!(figure("duplicates suppressed") > 0, "no duplicate was exercised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_stays_exact_under_faults_on_postgres() {
    let db = TestDb::create().await;
    run(db.url(), &std::env::temp_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_stays_exact_under_faults_on_sqlite() {
    let file = TestFile::create().await;
    run(&file.url(), &std::env::temp_dir());
}
