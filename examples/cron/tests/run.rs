//! The cron example runs three instances, kills the leader halfway, and checks every tick ran once.

use std::process::Command;

#[test]
fn three_instances_run_each_tick_once_through_a_leader_kill() {
    let dir = std::env::temp_dir().join(format!("leasehold-cron-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_example-cron")).current_dir(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("killing the leader"), "the leader was not found to kill");
    assert!(stdout.contains("each recorded once"));
}
