use chrono::TimeZone;

use super::*;

fn def(expr: &str, tz: &str) -> ScheduleDef {
    ScheduleDef {
        name: "nightly".into(),
        expression: expr.into(),
        time_zone: tz.into(),
        kind: "report".into(),
        payload: serde_json::json!({}),
        queue: "default".into(),
        max_attempts: 3,
        missed: MissedPolicy::Skip,
        overlap: OverlapPolicy::Skip,
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn a_daily_job_runs_once_at_the_first_valid_time_on_spring_forward_day() {
    let s = def("30 2 * * *", "Europe/Berlin").compile().unwrap();
    // 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST, so 02:30 does not exist that day
    let (ticks, more) = s.ticks_between(utc(2026, 3, 28, 12, 0, 0), utc(2026, 3, 30, 12, 0, 0), 10);
    assert!(!more);
    assert_eq!(ticks, vec![utc(2026, 3, 29, 1, 0, 0), utc(2026, 3, 30, 0, 30, 0)]); // 03:00 CEST, 02:30 CEST
}

#[test]
fn a_daily_job_runs_once_on_fall_back_day() {
    let s = def("30 2 * * *", "Europe/Berlin").compile().unwrap();
    // 2026-10-25: 02:30 happens twice (CEST, then CET); the job runs at the first
    let (ticks, _) = s.ticks_between(utc(2026, 10, 24, 12, 0, 0), utc(2026, 10, 26, 12, 0, 0), 10);
    assert_eq!(ticks, vec![utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 26, 1, 30, 0)]);
}

#[test]
fn six_fields_mean_seconds_and_the_time_zone_matters() {
    let every_second = def("* * * * * *", "UTC").compile().unwrap();
    let (ticks, more) = every_second.ticks_between(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 5), 3);
    assert_eq!((ticks.len(), more), (3, true));
    let nine_new_york = def("0 9 * * *", "America/New_York").compile().unwrap();
    assert_eq!(nine_new_york.next_after(utc(2026, 7, 1, 0, 0, 0)), Some(utc(2026, 7, 1, 13, 0, 0)));
}

#[test]
fn bad_expressions_and_zones_name_the_schedule_and_the_problem() {
    for (expr, tz, wanted) in [
        ("61 * * * *", "UTC", "invalid cron expression"),
        ("* * *", "UTC", "3 fields"),
        ("0 9 * * *", "Mars/Olympus_Mons", "unknown time zone"),
    ] {
        let e = def(expr, tz).compile().unwrap_err().to_string();
        assert!(e.contains("schedule \"nightly\"") && e.contains(wanted), "{e}");
    }
}

#[test]
fn on_time_ticks_run_and_the_skip_policy_drops_the_missed_ones() {
    let now = utc(2026, 1, 1, 12, 0, 0);
    let ticks = [utc(2026, 1, 1, 11, 58, 0), utc(2026, 1, 1, 11, 59, 0), utc(2026, 1, 1, 11, 59, 58)];
    let plan = plan_ticks(&ticks, now, ON_TIME, MissedPolicy::Skip);
    let outcomes: Vec<_> = plan.iter().map(|p| p.1).collect();
    assert_eq!(outcomes, vec![TickOutcome::Missed, TickOutcome::Missed, TickOutcome::Enqueued]);
}

#[test]
fn coalesce_runs_the_latest_missed_tick_once() {
    let now = utc(2026, 1, 1, 12, 0, 0);
    let ticks = [utc(2026, 1, 1, 11, 57, 0), utc(2026, 1, 1, 11, 58, 0), utc(2026, 1, 1, 11, 59, 0)];
    let outcomes: Vec<_> = plan_ticks(&ticks, now, ON_TIME, MissedPolicy::Coalesce).iter().map(|p| p.1).collect();
    assert_eq!(outcomes, vec![TickOutcome::Missed, TickOutcome::Missed, TickOutcome::CaughtUp]);
}

#[test]
fn catch_up_runs_missed_ticks_within_its_window_up_to_its_cap() {
    let now = utc(2026, 1, 1, 12, 0, 0);
    let ticks: Vec<_> = (1..=6).rev().map(|m| now - chrono::Duration::minutes(m)).collect(); // 11:54 .. 11:59
    let policy = MissedPolicy::catch_up(Duration::from_secs(4 * 60 + 30), 3);
    let outcomes: Vec<_> = plan_ticks(&ticks, now, ON_TIME, policy).iter().map(|p| p.1).collect();
    use TickOutcome::{CaughtUp, Missed};
    // 11:54 and 11:55 are outside the window; of 11:56..11:59 only the latest three run
    assert_eq!(outcomes, vec![Missed, Missed, Missed, CaughtUp, CaughtUp, CaughtUp]);
}

#[test]
fn overlap_policies_decide_from_the_previous_run() {
    use OverlapAction::*;
    let running = Some(TaskState::Running);
    assert_eq!(overlap_action(OverlapPolicy::Skip, None, false), Run);
    assert_eq!(overlap_action(OverlapPolicy::Skip, Some(TaskState::Completed), false), Run);
    assert_eq!(overlap_action(OverlapPolicy::Skip, running, false), Skip);
    assert_eq!(overlap_action(OverlapPolicy::Allow, running, false), Run);
    assert_eq!(overlap_action(OverlapPolicy::BufferOne, running, false), Buffer);
    assert_eq!(overlap_action(OverlapPolicy::BufferOne, running, true), Skip);
    assert_eq!(overlap_action(OverlapPolicy::CancelPrevious, Some(TaskState::Available), false), CancelPreviousAndRun);
}

#[test]
fn a_changed_definition_changes_the_fingerprint() {
    let a = def("0 9 * * *", "UTC");
    let b = ScheduleDef { overlap: OverlapPolicy::Allow, ..a.clone() };
    assert_ne!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint(), a.clone().fingerprint());
}

#[test]
fn far_behind_the_latest_ticks_are_found_backwards() {
    let s = def("* * * * *", "UTC").compile().unwrap();
    let now = utc(2026, 1, 2, 12, 0, 30);
    let latest = s.latest_ticks(utc(2026, 1, 1, 0, 0, 0), now, 3);
    assert_eq!(latest, vec![utc(2026, 1, 2, 11, 58, 0), utc(2026, 1, 2, 11, 59, 0), utc(2026, 1, 2, 12, 0, 0)]);
    assert!(s.latest_ticks(now, now, 3).is_empty());
}

#[test]
fn a_wider_on_time_window_covers_a_leader_change() {
    let now = utc(2026, 1, 1, 12, 0, 0);
    let ticks = [utc(2026, 1, 1, 11, 59, 45)];
    let narrow = plan_ticks(&ticks, now, ON_TIME, MissedPolicy::Skip);
    let wide = plan_ticks(&ticks, now, Duration::from_secs(20), MissedPolicy::Skip);
    assert_eq!((narrow[0].1, wide[0].1), (TickOutcome::Missed, TickOutcome::Enqueued));
}
