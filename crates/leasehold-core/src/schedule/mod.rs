//! Singleton scheduled jobs: definitions, policies, and the pure planning a scheduler leader does on
//! every pass. No I/O and no clock of its own: every function takes `now`, so tests fix the time.
//!
//! A schedule fires at most once per tick however many instances run: the leader writes one row per
//! (schedule, tick) into a ledger with a unique key, in the same transaction as the task it enqueues.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task::{TaskId, TaskState};

/// What to do with ticks that passed while no leader ran (a deploy, an outage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Run none of them; wait for the next tick.
    Skip,
    /// Run once for all of them (as the latest missed tick).
    Coalesce,
    /// Run each missed tick that is at most `window` old, at most `max` of them (the latest ones).
    CatchUp {
        /// How far back missed ticks still run.
        window_ms: u64,
        /// The most missed ticks run in one pass.
        max: u32,
    },
}

impl MissedPolicy {
    /// Catch up every tick missed within `window`, at most `max` of them.
    pub fn catch_up(window: Duration, max: u32) -> Self {
        Self::CatchUp { window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX), max }
    }
}

/// What to do when a tick comes while the previous run has not finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Do not run this tick.
    Skip,
    /// Hold this tick and run it once the previous run finished; further ticks meanwhile are skipped.
    BufferOne,
    /// Run it anyway, alongside the previous run.
    Allow,
    /// Cancel the previous run, then run this tick.
    CancelPrevious,
}

/// A schedule as the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDef {
    /// Unique name.
    pub name: String,
    /// The cron expression: 5 fields, or 6 with seconds first.
    pub expression: String,
    /// IANA time zone the expression is read in.
    pub time_zone: String,
    /// The job kind each run enqueues.
    pub kind: String,
    /// The job's payload.
    pub payload: serde_json::Value,
    /// Queue of the runs.
    pub queue: String,
    /// Attempts of each run.
    pub max_attempts: i32,
    /// Missed-tick policy.
    pub missed: MissedPolicy,
    /// Overlap policy.
    pub overlap: OverlapPolicy,
}

impl ScheduleDef {
    /// Parses and checks the definition; the error names the schedule and the problem.
    pub fn compile(&self) -> Result<CompiledSchedule> {
        if self.name.is_empty() {
            return Err(Error::InvalidConfig("a schedule needs a name".into()));
        }
        if let Some(m) = crate::name_problem("schedule name", &self.name) {
            return Err(Error::InvalidConfig(m));
        }
        let bad = |what: String| Error::InvalidConfig(format!("schedule {:?}: {what}", self.name));
        for (what, name) in [("queue name", &self.queue), ("task kind", &self.kind)] {
            if let Some(m) = crate::name_problem(what, name) {
                return Err(bad(m));
            }
        }
        // every tick enqueues a task with these: refused here rather than at each tick
        for (what, name) in [("schedule name", &self.name), ("queue name", &self.queue), ("task kind", &self.kind)] {
            if let Some(m) = crate::nul_problem(what, name) {
                return Err(bad(m));
            }
        }
        if crate::json_holds_nul(&self.payload) {
            return Err(bad("the payload holds a NUL character (\\u0000), which no store keeps".into()));
        }
        let fields = self.expression.split_whitespace().count();
        if !(fields == 5 || fields == 6) {
            return Err(bad(format!(
                "cron expression {:?} has {fields} fields: give 5 (minute first) or 6 (second first)",
                self.expression
            )));
        }
        let seconds = if fields == 6 { Seconds::Required } else { Seconds::Disallowed };
        let cron = CronParser::builder()
            .seconds(seconds)
            .build()
            .parse(&self.expression)
            .map_err(|e| bad(format!("invalid cron expression {:?}: {e}", self.expression)))?;
        let tz = Tz::from_str(&self.time_zone).map_err(|_| {
            bad(format!("unknown time zone {:?} (use an IANA name such as \"Europe/Berlin\")", self.time_zone))
        })?;
        if self.kind.is_empty() || self.queue.is_empty() || self.max_attempts < 1 {
            return Err(bad("needs a job kind, a queue and at least one attempt".into()));
        }
        if let MissedPolicy::CatchUp { max: 0, .. } = self.missed {
            return Err(bad("a catch-up policy needs max >= 1".into()));
        }
        Ok(CompiledSchedule { cron, tz })
    }

    /// A fingerprint of everything that defines the schedule, to notice a changed definition.
    pub fn fingerprint(&self) -> String {
        serde_json::json!([
            self.expression,
            self.time_zone,
            self.kind,
            self.payload,
            self.queue,
            self.max_attempts,
            self.missed,
            self.overlap
        ])
        .to_string()
    }
}

/// A parsed expression in its time zone.
#[derive(Clone, Debug)]
pub struct CompiledSchedule {
    cron: Cron,
    tz: Tz,
}

impl CompiledSchedule {
    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron.find_next_occurrence(&local, false).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The latest tick at or before `at`.
    pub fn previous_at(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&local, true).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The latest `cap` ticks in `(after, until]`, oldest first: what a scheduler far behind still
    /// considers (the older ones are passed over).
    pub fn latest_ticks(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = until;
        while out.len() < cap {
            match self.previous_at(cursor) {
                Some(t) if t > after => {
                    out.push(t);
                    cursor = t - chrono::Duration::milliseconds(1);
                }
                _ => break,
            }
        }
        out.reverse();
        out
    }

    /// Ticks in `(after, until]`, oldest first, at most `cap` of them (the oldest); the flag says
    /// whether more were left out.
    pub fn ticks_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, cap: usize) -> (Vec<DateTime<Utc>>, bool) {
        let mut out = Vec::new();
        let mut cursor = after;
        while let Some(t) = self.next_after(cursor) {
            if t > until {
                return (out, false);
            }
            if out.len() == cap {
                return (out, true);
            }
            out.push(t);
            cursor = t;
        }
        (out, false)
    }
}

/// How the leader treats one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TickOutcome {
    /// Due and run.
    Enqueued,
    /// Missed (no leader at the time) and run later under the catch-up or coalesce policy.
    CaughtUp,
    /// Missed and not run, as the missed-tick policy says.
    Missed,
    /// Not run because the previous run had not finished (overlap policy), or the schedule was paused.
    Skipped,
    /// Held until the previous run finishes (overlap: buffer one).
    Buffered,
    /// Run on an operator's request ("trigger now").
    Triggered,
}

impl TickOutcome {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueued => "enqueued",
            Self::CaughtUp => "caught_up",
            Self::Missed => "missed",
            Self::Skipped => "skipped",
            Self::Buffered => "buffered",
            Self::Triggered => "triggered",
        }
    }

    /// Whether a run is enqueued for the tick.
    pub fn runs(self) -> bool {
        matches!(self, Self::Enqueued | Self::CaughtUp | Self::Triggered)
    }
}

/// How late a tick may be seen and still count as on time rather than missed, at the least. A
/// scheduler widens it to cover a leader change: its lease plus its longest pause between passes.
pub const ON_TIME: Duration = Duration::from_secs(5);

/// The most ticks one pass looks at for one schedule; the rest are passed over as missed.
pub const MAX_TICKS_PER_PASS: usize = 1_000;

/// Applies the missed-tick policy to the ticks due in `(last_tick, now]`: each gets `Enqueued` (seen
/// within `on_time` of its time), `CaughtUp` or `Missed`.
pub fn plan_ticks(
    ticks: &[DateTime<Utc>],
    now: DateTime<Utc>,
    on_time: Duration,
    policy: MissedPolicy,
) -> Vec<(DateTime<Utc>, TickOutcome)> {
    let grace = on_time;
    let on_time = |t: &DateTime<Utc>| (now - *t).to_std().unwrap_or_default() <= grace;
    let late: Vec<&DateTime<Utc>> = ticks.iter().filter(|t| !on_time(t)).collect();
    let mut out: Vec<(DateTime<Utc>, TickOutcome)> = Vec::with_capacity(ticks.len());
    let last_late = late.last().copied().copied();
    let mut catch_up_left = match policy {
        MissedPolicy::CatchUp { window_ms, max } => {
            let window = chrono::Duration::milliseconds(i64::try_from(window_ms).unwrap_or(i64::MAX / 2));
            let eligible = late.iter().filter(|t| now - ***t <= window).count();
            // the latest `max` eligible ones run
            (eligible.saturating_sub(max as usize), max as usize, window)
        }
        _ => (0, 0, chrono::Duration::zero()),
    };
    for t in ticks {
        let outcome = if on_time(t) {
            TickOutcome::Enqueued
        } else {
            match policy {
                MissedPolicy::Skip => TickOutcome::Missed,
                MissedPolicy::Coalesce if Some(*t) == last_late => TickOutcome::CaughtUp,
                MissedPolicy::Coalesce => TickOutcome::Missed,
                MissedPolicy::CatchUp { .. } => {
                    let (skip_first, _, window) = &mut catch_up_left;
                    if now - *t > *window {
                        TickOutcome::Missed
                    } else if *skip_first > 0 {
                        *skip_first -= 1;
                        TickOutcome::Missed
                    } else {
                        TickOutcome::CaughtUp
                    }
                }
            }
        };
        out.push((*t, outcome));
    }
    out
}

/// What the overlap policy does with a tick that would run, given the state of the previous run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlapAction {
    /// Run it.
    Run,
    /// Record it skipped.
    Skip,
    /// Hold it until the previous run finishes.
    Buffer,
    /// Cancel the previous run, then run it.
    CancelPreviousAndRun,
}

/// Decides a running tick's fate from the previous run's state (`None`: no previous run) and whether a
/// tick is already buffered.
pub fn overlap_action(policy: OverlapPolicy, previous: Option<TaskState>, buffered: bool) -> OverlapAction {
    let busy = previous.is_some_and(|s| !s.is_final());
    match (policy, busy) {
        (_, false) | (OverlapPolicy::Allow, true) => OverlapAction::Run,
        (OverlapPolicy::Skip, true) => OverlapAction::Skip,
        (OverlapPolicy::BufferOne, true) if buffered => OverlapAction::Skip,
        (OverlapPolicy::BufferOne, true) => OverlapAction::Buffer,
        (OverlapPolicy::CancelPrevious, true) => OverlapAction::CancelPreviousAndRun,
    }
}

/// A schedule's state as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleRecord {
    /// The definition the last leader wrote.
    pub def: ScheduleDef,
    /// Paused by an operator.
    pub paused: bool,
    /// The latest tick the leader has dealt with.
    pub last_tick: Option<DateTime<Utc>>,
    /// The task of the latest run.
    pub last_task: Option<TaskId>,
    /// A tick held by the buffer-one overlap policy.
    pub buffered_tick: Option<DateTime<Utc>>,
    /// An operator asked for a run now, at this time.
    pub trigger_at: Option<DateTime<Utc>>,
    /// No longer defined by the leader's code: it does not fire.
    pub removed: bool,
}

/// A leader's term: the lease's name, its holder and the token of the term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderToken {
    /// The lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// The term's fencing token.
    pub token: crate::FencingToken,
}

impl LeaderToken {
    /// `Ok` when `current`, the token a store read for the lease's term in effect (none: the lease is
    /// free or was released), is this term's; [`Error::LeadershipLost`] otherwise.
    pub fn check_current(&self, current: Option<i64>) -> Result<()> {
        if current == Some(self.token.0) {
            Ok(())
        } else {
            Err(Error::LeadershipLost { name: self.name.clone(), token: self.token })
        }
    }
}

/// Take the leader lease `name` if it is free or expired (a new term with a new token), or extend it if
/// `holder` holds it already (same term, same token).
#[derive(Clone, Debug)]
pub struct LeaderAcquireParams {
    /// The lease's name.
    pub name: String,
    /// Who asks.
    pub holder: String,
    /// How long the lease lasts from the store's `now`.
    pub ttl: Duration,
}

/// A leader lease as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderRecord {
    /// Who holds it.
    pub holder: String,
    /// The term's token.
    pub token: crate::FencingToken,
    /// When it ends, on the store's clock.
    pub expires_at: DateTime<Utc>,
}

/// Operator actions on a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleAction {
    /// Stop firing (ticks while paused are not run later).
    Pause,
    /// Fire again from the next tick.
    Resume,
    /// Run once now, besides the regular ticks.
    Trigger,
}

/// How a recorded tick changes the schedule's buffered tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferChange {
    /// Leave it.
    Keep,
    /// Hold this tick.
    Set(DateTime<Utc>),
    /// Nothing is held any more.
    Clear,
}

impl BufferChange {
    /// As stored: `"keep"`, `"set"` or `"clear"`, with the tick when set.
    pub fn parts(self) -> (&'static str, Option<DateTime<Utc>>) {
        match self {
            Self::Keep => ("keep", None),
            Self::Set(t) => ("set", Some(t)),
            Self::Clear => ("clear", None),
        }
    }
}

/// Record how the leader dealt with one tick: one ledger row per (schedule, tick, manual), the task
/// of a run, and the schedule's progress, in one transaction fenced by the leader's token.
#[derive(Clone, Debug)]
pub struct ScheduleTickParams {
    /// The recording leader's term.
    pub leader: LeaderToken,
    /// The schedule.
    pub schedule: String,
    /// The tick.
    pub tick: DateTime<Utc>,
    /// An operator's "trigger now" rather than the expression's tick.
    pub manual: bool,
    /// What became of it.
    pub outcome: TickOutcome,
    /// The run to enqueue, when the outcome runs.
    pub task: Option<crate::NewTask>,
    /// The schedule's `last_tick` becomes at least this.
    pub advance_to: DateTime<Utc>,
    /// The buffered tick afterwards.
    pub buffer: BufferChange,
    /// Clear an operator's pending trigger.
    pub clear_trigger: bool,
    /// The previous run to cancel (overlap: cancel previous), only if this call writes the tick.
    pub cancel: Option<TaskId>,
}

#[cfg(test)]
mod tests;
