//! The fault suite on demand: `leasehold-faults [short|long|locks] [--seed N]` (or `./scripts/faults.sh`);
//! `locks` runs the lock scenario alone, at the long profile's size.
//! Runs the profile on a PostgreSQL cluster of its own, prints its figures, and exits non-zero on any
//! anomaly. The worker processes are `leasehold-test-worker`, found beside this binary.

use std::process::ExitCode;

use leasehold_testkit::faults::locks::{self, LockProfile};
use leasehold_testkit::faults::{Profile, run::run};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
        });
    let (profile, lock_profile) = match args.first().map(String::as_str) {
        None | Some("short") => (Profile::short(seed), LockProfile::short(seed)),
        Some("long" | "locks") => (Profile::long(seed), LockProfile::long(seed)),
        Some(other) => {
            eprintln!("unknown profile {other:?}: use short, long or locks, optionally with --seed N");
            return ExitCode::from(2);
        }
    };
    let worker = std::env::current_exe().unwrap().with_file_name("leasehold-test-worker");
    if !worker.is_file() {
        eprintln!("{} is missing: build it with `cargo build -p leasehold-testkit --bins`", worker.display());
        return ExitCode::from(2);
    }
    let contender = worker.with_file_name("leasehold-lock-contender");
    if args.first().map(String::as_str) == Some("locks") {
        // the lock scenario alone, at the long profile's size
        let p = LockProfile::long(seed);
        let report = locks::run(&p, contender.to_str().unwrap()).await;
        println!("{}", report.summary(&p));
        for a in &report.anomalies {
            println!("ANOMALY {a}");
        }
        return if report.anomalies.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    println!("running the {} profile, seed {seed} (replay with --seed {seed})", profile.name);
    let lock_report = locks::run(&lock_profile, contender.to_str().unwrap()).await;
    println!("{}", lock_report.summary(&lock_profile));
    let report = run(&profile, worker.to_str().unwrap(), false).await;
    println!("{}", report.summary());
    let anomalies: Vec<&String> = lock_report.anomalies.iter().chain(&report.check.anomalies).collect();
    for a in &anomalies {
        println!("ANOMALY {a}");
    }
    if anomalies.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
