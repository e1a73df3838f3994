//! The fault suite's short profile, and the checker's own test: a planted bug must be caught.

use leasehold_testkit::faults::locks::{self, LockProfile};
use leasehold_testkit::faults::{Profile, run::run};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-worker");

fn seed() -> u64 {
    let seed = std::env::var("LEASEHOLD_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        u64::from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos())
    });
    println!("seed {seed} (replay with LEASEHOLD_TEST_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_profile_finds_no_anomaly() {
    let report = run(&Profile::short(seed()), BIN, false).await;
    println!("{}", report.summary());
    assert!(report.clean(), "anomalies:\n{}", report.check.anomalies.join("\n"));
    let c = &report.check;
    assert!(
        c.takeovers_ms.len() >= 5,
        "the faults hit too little work in progress: {} takeovers",
        c.takeovers_ms.len()
    );
    // dropped and frozen sessions count only when the worker had sessions to cut
    let injected: usize = c.faults.values().sum();
    assert!(injected >= 40, "only {injected} of 48 scheduled faults hit something: {:?}", c.faults);
    assert!(!c.self_fence_ms.is_empty(), "no worker had to fence itself: the stalls missed all work in progress");
}

/// Workers that complete by id, without their token: paused holders' late completions get through,
/// and the checker must say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_completion_without_its_token() {
    let profile = Profile {
        name: "planted-bug",
        tasks: 40,
        kills: 0,
        pauses: 10,
        short_pauses: 0,
        terminations: 0,
        stalls: 0,
        restarts: 0,
        pins: 0,
        // work of several leases: every paused holder wakes while its task runs under a newer token
        work_ms: (6_000, 7_000),
        ..Profile::short(seed())
    };
    let report = run(&profile, BIN, true).await;
    println!("{}", report.summary());
    let stale = report.check.anomalies.iter().filter(|a| a.starts_with("stale write accepted")).count();
    assert!(stale > 0, "the checker missed the planted bug:\n{}", report.summary());
}

/// Scenario 1: sixteen contenders in four processes for four singleton keys; the counters the lock
/// protects come out exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contenders_for_singleton_keys_keep_counters_exact() {
    let p = LockProfile::short(seed());
    let report = locks::run(&p, env!("CARGO_BIN_EXE_leasehold-lock-contender")).await;
    println!("{}", report.summary(&p));
    assert!(report.anomalies.is_empty(), "anomalies:\n{}", report.anomalies.join("\n"));
    assert!(report.busy > 0, "the contenders never met: the scenario tested nothing");
    assert_eq!(report.acquired, 1_600, "every contender got its key every time");
}
