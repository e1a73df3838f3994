//! [`Scheduler`]: the service every instance runs; the one that leads enqueues the ticks.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use leasehold_core::schedule::*;
use leasehold_core::{Error, NewTask, Result, ScheduleStore, TaskId, TaskState};

use super::schedule::Schedule;
use crate::client::Client;
use crate::telemetry::record;

/// How a scheduler leads.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// The leader lease's name: schedulers sharing it elect one leader.
    pub lease_name: String,
    /// Leader lease `L`, on the store's clock.
    pub lease_ttl: Duration,
    /// Renewal interval `H`.
    pub renew_interval: Duration,
    /// Margin `M`: the leader stops acting at `t0 + L - M`.
    pub trust_margin: Duration,
    /// The longest pause between two passes (a pass also runs at every tick).
    pub max_idle: Duration,
    /// This instance's name in the leader lease (a per-process nonce is appended); generated when unset.
    pub holder: Option<String>,
}

impl SchedulerConfig {
    /// Default lease name.
    pub const DEFAULT_LEASE_NAME: &str = "leasehold-scheduler";
    /// Default `L`.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
    /// Default `H`.
    pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(5);
    /// Default `M`.
    pub const DEFAULT_TRUST_MARGIN: Duration = Duration::from_secs(3);
    /// Default longest pause between passes.
    pub const DEFAULT_MAX_IDLE: Duration = Duration::from_secs(1);

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        let what = "the scheduler's lease name";
        let name = &self.lease_name;
        if let Some(m) = leasehold_core::name_problem(what, name).or_else(|| leasehold_core::nul_problem(what, name)) {
            return bad(m);
        }
        if self.trust_margin.is_zero() || self.trust_margin >= self.lease_ttl {
            return bad(format!("scheduler trust_margin must be in (0, lease_ttl), got {:?}", self.trust_margin));
        }
        if self.renew_interval.is_zero() || self.renew_interval >= self.lease_ttl - self.trust_margin {
            return bad(format!(
                "scheduler renew_interval must be in (0, lease_ttl - trust_margin), got {:?}",
                self.renew_interval
            ));
        }
        if self.max_idle.is_zero() {
            return bad("scheduler max_idle must be above zero".into());
        }
        Ok(())
    }
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            lease_name: Self::DEFAULT_LEASE_NAME.into(),
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            renew_interval: Self::DEFAULT_RENEW_INTERVAL,
            trust_margin: Self::DEFAULT_TRUST_MARGIN,
            max_idle: Self::DEFAULT_MAX_IDLE,
            holder: None,
        }
    }
}

/// What a scheduler did since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerStats {
    /// Terms this instance began as leader.
    pub terms: u64,
    /// Ticks run on time.
    pub enqueued: u64,
    /// Missed ticks run late (catch-up, coalesce).
    pub caught_up: u64,
    /// Missed ticks not run.
    pub missed: u64,
    /// Ticks skipped (overlap) or held (buffer one).
    pub skipped: u64,
    /// Operator-triggered runs.
    pub triggered: u64,
}

#[derive(Default)]
struct Counters {
    terms: AtomicU64,
    enqueued: AtomicU64,
    caught_up: AtomicU64,
    missed: AtomicU64,
    skipped: AtomicU64,
    triggered: AtomicU64,
}

impl Counters {
    fn count(&self, outcome: TickOutcome) {
        let c = match outcome {
            TickOutcome::Enqueued => &self.enqueued,
            TickOutcome::CaughtUp => &self.caught_up,
            TickOutcome::Missed => &self.missed,
            TickOutcome::Skipped | TickOutcome::Buffered => &self.skipped,
            TickOutcome::Triggered => &self.triggered,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassReport {
    /// Whether this instance led during the pass.
    pub leading: bool,
    /// The ticks it recorded, with their outcome.
    pub ticks: Vec<(String, DateTime<Utc>, TickOutcome)>,
    /// The earliest next tick of the schedules it leads.
    pub next_tick: Option<DateTime<Utc>>,
}

/// A schedule as an operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleInfo {
    /// The stored schedule.
    pub record: ScheduleRecord,
    /// Its next tick, if it fires.
    pub next_tick: Option<DateTime<Utc>>,
}

struct Term {
    leader: LeaderToken,
    trusted_until: Instant,
    /// Whether this term wrote its code's definitions (retried at every pass until it did).
    synced: bool,
}

struct Inner<S> {
    store: S,
    config: SchedulerConfig,
    holder: String,
    schedules: Vec<Schedule>,
    term: Mutex<Option<Term>>,
    counters: Counters,
    /// When this instance began trying to lead, while it does not: the start of its lock wait.
    wanting_since: std::sync::Mutex<Option<Instant>>,
}

/// Runs on every instance; the leader enqueues each schedule's ticks. Build it with
/// [`Scheduler::builder`].
pub struct Scheduler<S> {
    inner: Arc<Inner<S>>,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

/// Builds a [`Scheduler`].
pub struct SchedulerBuilder<S> {
    store: S,
    config: SchedulerConfig,
    schedules: Vec<Schedule>,
}

impl<S: ScheduleStore> SchedulerBuilder<S> {
    /// Adds a schedule.
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }
    /// Replaces the configuration.
    pub fn config(mut self, config: SchedulerConfig) -> Self {
        self.config = config;
        self
    }
    /// Leader lease `L`, renewal `H` and margin `M` at once.
    pub fn lease(mut self, ttl: Duration, renew: Duration, margin: Duration) -> Self {
        self.config.lease_ttl = ttl;
        self.config.renew_interval = renew;
        self.config.trust_margin = margin;
        self
    }
    /// This instance's id.
    pub fn holder(mut self, holder: impl Into<String>) -> Self {
        self.config.holder = Some(holder.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Scheduler<S>> {
        self.config.validate()?;
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = self.schedules.iter().find(|s| !names.insert(s.name().to_owned())) {
            return Err(Error::InvalidConfig(format!("schedule {:?} is defined twice", dup.name())));
        }
        // a per-process nonce, so that two processes given the same name never share a term
        let nonce = uuid::Uuid::now_v7().simple().to_string();
        let base = self.config.holder.clone().unwrap_or_else(|| format!("scheduler-{}", std::process::id()));
        let holder = format!("{base}#{}", &nonce[20..]);
        Ok(Scheduler {
            inner: Arc::new(Inner {
                store: self.store,
                config: self.config,
                holder,
                schedules: self.schedules,
                term: Mutex::new(None),
                counters: Counters::default(),
                wanting_since: std::sync::Mutex::new(None),
            }),
            running: Mutex::new(None),
        })
    }
}

impl<S: ScheduleStore> Scheduler<S> {
    /// A builder on `store`.
    pub fn builder(store: S) -> SchedulerBuilder<S> {
        SchedulerBuilder { store, config: SchedulerConfig::default(), schedules: Vec::new() }
    }

    /// This instance's id in the leader lease: the configured name, `#`, and a per-process nonce.
    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    /// Counters since it was built.
    pub fn stats(&self) -> SchedulerStats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedulerStats {
            terms: get(&c.terms),
            enqueued: get(&c.enqueued),
            caught_up: get(&c.caught_up),
            missed: get(&c.missed),
            skipped: get(&c.skipped),
            triggered: get(&c.triggered),
        }
    }

    /// Starts leading when it can. Calling it on a started scheduler does nothing.
    pub async fn start(&self) {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return;
        }
        crate::telemetry::describe();
        *self.inner.wanting_since.lock().unwrap() = None;
        let backend = self.inner.store.backend_name();
        record::lock_registered(backend, &self.inner.config.lease_name);
        for sch in &self.inner.schedules {
            record::cron_registered(backend, sch.name());
        }
        let stop = CancellationToken::new();
        let inner = self.inner.clone();
        let handle = tokio::spawn(run(inner, stop.clone()));
        *running = Some((stop, handle));
    }

    /// Stops, and hands leadership over at once. Safe before `start` and more than once.
    pub async fn stop(&self) {
        if let Some((stop, handle)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = handle.await;
        }
        *self.inner.wanting_since.lock().unwrap() = None;
        // leadership may have been taken by the loop or by `run_once`: hand it over either way
        let term = self.inner.term.lock().await.take();
        if let Some(Err(e)) = match term {
            Some(t) => Some(self.inner.store.leader_release(t.leader).await),
            None => None,
        } {
            tracing::warn!(error = %e, "releasing the scheduler's leadership failed; it expires by itself");
        }
    }

    /// One pass as if the time were `now`: renew or take leadership, then, if leading, deal with every
    /// due tick. The background loop calls it with the real time; tests call it with their own.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<PassReport> {
        pass(&self.inner, now).await
    }
}

/// A started scheduler dropped without [`Scheduler::stop`] stops its loop (after the pass it is in, if
/// any): leading on with no handle left to stop it would enqueue ticks for a part of the application that
/// is gone. Its leadership is not released (that needs the store), so it expires by itself within `L`.
impl<S> Drop for Scheduler<S> {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.get_mut().take() {
            stop.cancel();
        }
    }
}

impl<S> Inner<S> {
    /// How late a tick may be seen and still run on time: long enough to cover a leader change (the
    /// lease expiring, then the next pass), never less than [`ON_TIME`].
    fn on_time(&self) -> Duration {
        (self.config.lease_ttl + self.config.max_idle + Duration::from_secs(2)).max(ON_TIME)
    }
}

async fn run<S: ScheduleStore>(inner: Arc<Inner<S>>, stop: CancellationToken) {
    loop {
        let wait = match pass(&inner, Utc::now()).await {
            Ok(report) => {
                let until_tick =
                    report.next_tick.and_then(|t| (t - Utc::now()).to_std().ok()).unwrap_or(inner.config.max_idle);
                until_tick.min(inner.config.max_idle).min(inner.config.renew_interval)
            }
            Err(e) => {
                tracing::warn!(error = %e, "scheduler pass failed");
                inner.config.max_idle
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            // a few ms past the tick, so that it is due when the pass looks
            _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
        }
    }
}

/// Renews or takes the lease; answers the term (its token, whether its definitions are still to be
/// written, and until when it is trusted) if this instance leads and still trusts it.
async fn lead<S: ScheduleStore>(inner: &Inner<S>) -> Result<Option<(LeaderToken, bool, Instant)>> {
    let mut term = inner.term.lock().await;
    let renew_due = term.as_ref().is_none_or(|t| {
        Instant::now() + inner.config.lease_ttl - inner.config.trust_margin - inner.config.renew_interval
            >= t.trusted_until
    });
    if renew_due {
        let t0 = Instant::now();
        let params = LeaderAcquireParams {
            name: inner.config.lease_name.clone(),
            holder: inner.holder.clone(),
            ttl: inner.config.lease_ttl,
        };
        let (backend, lock) = (inner.store.backend_name(), inner.config.lease_name.as_str());
        // the wait starts at the first attempt made without a term, not during the leader's renewals
        let wanting_since =
            if term.is_none() { Some(*inner.wanting_since.lock().unwrap().get_or_insert(t0)) } else { None };
        match inner.store.leader_acquire(params).await {
            Ok(Some(token)) => {
                let new_term = term.as_ref().is_none_or(|t| t.leader.token != token);
                record::lock_attempt(backend, lock, if new_term { "acquired" } else { "renewed" });
                *inner.wanting_since.lock().unwrap() = None;
                if new_term {
                    record::lock_acquired(backend, lock, wanting_since.map_or(Duration::ZERO, |w| w.elapsed()));
                    inner.counters.terms.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(holder = %inner.holder, token = %token, "scheduler leadership taken");
                }
                let leader = LeaderToken { name: inner.config.lease_name.clone(), holder: inner.holder.clone(), token };
                let synced = !new_term && term.as_ref().is_some_and(|t| t.synced);
                let trusted_until = t0 + inner.config.lease_ttl - inner.config.trust_margin;
                *term = Some(Term { leader: leader.clone(), trusted_until, synced });
                // a slow answer may already be past the trust window
                return Ok((Instant::now() < trusted_until).then_some((leader, !synced, trusted_until)));
            }
            Ok(None) => {
                record::lock_attempt(backend, lock, "busy");
                *term = None;
                return Ok(None);
            }
            // keep the term while it is trusted: the store may be back before it ends
            Err(e) => {
                record::lock_attempt(backend, lock, "error");
                if term.is_some() {
                    *inner.wanting_since.lock().unwrap() = None;
                }
                tracing::warn!(error = %e, "renewing the scheduler's leadership failed");
            }
        }
    }
    match term.as_ref() {
        Some(t) if Instant::now() < t.trusted_until => Ok(Some((t.leader.clone(), !t.synced, t.trusted_until))),
        _ => {
            *term = None;
            Ok(None)
        }
    }
}

async fn pass<S: ScheduleStore>(inner: &Inner<S>, now: DateTime<Utc>) -> Result<PassReport> {
    let report = lead_and_pass(inner, now).await;
    // a write refused by the term, wherever in the pass: the term is over, and the next pass finds out
    // whether this instance leads again
    if let Err(Error::LeadershipLost { .. }) = &report {
        *inner.term.lock().await = None;
    }
    report
}

async fn lead_and_pass<S: ScheduleStore>(inner: &Inner<S>, now: DateTime<Utc>) -> Result<PassReport> {
    let Some((leader, unsynced, trusted_until)) = lead(inner).await? else {
        return Ok(PassReport::default());
    };
    let store = &inner.store;
    if unsynced {
        // each write is checked against the term: a leader that lost it while paused before this point
        // does not write its (perhaps older) definitions over its successor's
        for s in &inner.schedules {
            store.schedule_upsert(leader.clone(), s.def.clone()).await?;
        }
        let keep = inner.schedules.iter().map(|s| s.name().to_owned()).collect();
        store.schedule_retire(leader.clone(), keep).await?;
        if let Some(t) = inner.term.lock().await.as_mut().filter(|t| t.leader.token == leader.token) {
            t.synced = true;
        }
    }
    let mut report = PassReport { leading: true, ..PassReport::default() };
    let records: HashMap<String, ScheduleRecord> =
        store.schedule_list().await?.into_iter().map(|r| (r.def.name.clone(), r)).collect();
    for s in &inner.schedules {
        let Some(rec) = records.get(s.name()) else {
            // defined by another leader's code only: this one writes it at its next term
            continue;
        };
        match schedule_pass(inner, &leader, trusted_until, s, rec, now, &mut report).await {
            Err(e @ Error::LeadershipLost { .. }) => return Err(e),
            Err(e) => tracing::warn!(schedule = s.name(), error = %e, "schedule pass failed"),
            Ok(()) => {}
        }
        if !rec.paused {
            let next = s.compiled.next_after(now);
            report.next_tick = match (report.next_tick, next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn schedule_pass<S: ScheduleStore>(
    inner: &Inner<S>,
    leader: &LeaderToken,
    trusted_until: Instant,
    s: &Schedule,
    rec: &ScheduleRecord,
    now: DateTime<Utc>,
    report: &mut PassReport,
) -> Result<()> {
    let store = &inner.store;
    let mut previous = previous_state(store, rec.last_task).await?;
    let mut last_task = rec.last_task;
    let mut buffered = rec.buffered_tick;
    let record = |tick: DateTime<Utc>, outcome: TickOutcome, manual: bool, buffer: BufferChange| ScheduleTickParams {
        leader: leader.clone(),
        schedule: s.name().to_owned(),
        tick,
        manual,
        outcome,
        task: outcome.runs().then(|| run_task(&s.def)),
        advance_to: if manual { rec.last_tick.unwrap_or(now) } else { tick },
        buffer,
        clear_trigger: manual,
        cancel: None,
    };
    // the leader acts only while it trusts its term
    let trusted = || {
        if Instant::now() < trusted_until {
            Ok(())
        } else {
            Err(Error::LeadershipLost { name: leader.name.clone(), token: leader.token })
        }
    };

    // an operator's "trigger now" runs regardless of pause and overlap: someone asked for it
    if let Some(at) = rec.trigger_at {
        trusted()?;
        let params = record(at, TickOutcome::Triggered, true, BufferChange::Keep);
        write_tick(inner, params, &mut last_task, report).await?;
        previous = Some(TaskState::Available);
    }
    if rec.paused {
        return Ok(());
    }
    // a held tick runs once the previous run finished
    if let Some(b) = buffered.filter(|_| previous.is_none_or(TaskState::is_final)) {
        trusted()?;
        let params = record(b, TickOutcome::CaughtUp, false, BufferChange::Clear);
        write_tick(inner, params, &mut last_task, report).await?;
        buffered = None;
        previous = Some(TaskState::Available);
    }

    let after = rec.last_tick.unwrap_or(now);
    let (mut ticks, more) = s.compiled.ticks_between(after, now, MAX_TICKS_PER_PASS);
    if more {
        // far behind: only the latest ticks can still run under any policy; older ones are passed over
        ticks = s.compiled.latest_ticks(after, now, MAX_TICKS_PER_PASS);
    }
    for (tick, planned) in plan_ticks(&ticks, now, inner.on_time(), s.def.missed) {
        let mut cancel = None;
        let (outcome, buffer) = if planned.runs() {
            match overlap_action(s.def.overlap, previous, buffered.is_some()) {
                OverlapAction::Run => (planned, BufferChange::Keep),
                OverlapAction::Skip => (TickOutcome::Skipped, BufferChange::Keep),
                OverlapAction::Buffer => (TickOutcome::Buffered, BufferChange::Set(tick)),
                OverlapAction::CancelPreviousAndRun => {
                    cancel = last_task;
                    (planned, BufferChange::Keep)
                }
            }
        } else {
            (planned, BufferChange::Keep)
        };
        trusted()?;
        let params = ScheduleTickParams { cancel, ..record(tick, outcome, false, buffer) };
        let wrote = write_tick(inner, params, &mut last_task, report).await?;
        if outcome.runs() {
            previous = Some(TaskState::Available);
        }
        if wrote && outcome == TickOutcome::Buffered {
            buffered = Some(tick);
        }
    }
    Ok(())
}

/// Records one tick, and keeps the pass's bookkeeping: the latest run, the counters, the report.
/// Answers whether this call wrote the tick.
async fn write_tick<S: ScheduleStore>(
    inner: &Inner<S>,
    params: ScheduleTickParams,
    last_task: &mut Option<TaskId>,
    report: &mut PassReport,
) -> Result<bool> {
    let (name, tick, outcome) = (params.schedule.clone(), params.tick, params.outcome);
    let run = params.task.as_ref().map(|t| t.id);
    let wrote = inner.store.schedule_tick_record(params).await?;
    if wrote && run.is_some() {
        *last_task = run;
    }
    inner.counters.count(outcome);
    record::cron_tick(inner.store.backend_name(), &name, outcome.as_str());
    report.ticks.push((name, tick, outcome));
    Ok(wrote)
}

async fn previous_state<S: ScheduleStore>(store: &S, last: Option<TaskId>) -> Result<Option<TaskState>> {
    let Some(id) = last else { return Ok(None) };
    match store.task_get(id).await {
        Ok(rec) => Ok(Some(rec.state)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn run_task(def: &ScheduleDef) -> NewTask {
    NewTask {
        queue: def.queue.clone(),
        max_attempts: def.max_attempts,
        ..NewTask::new(def.kind.clone(), def.payload.clone())
    }
}

impl<S: ScheduleStore> Client<S> {
    /// Every schedule with its last and next tick.
    pub async fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let now = Utc::now();
        Ok(self
            .store()
            .schedule_list()
            .await?
            .into_iter()
            .map(|record| {
                let next_tick = if record.paused || record.removed {
                    None
                } else {
                    record.def.compile().ok().and_then(|c| c.next_after(record.last_tick.unwrap_or(now).max(now)))
                };
                ScheduleInfo { record, next_tick }
            })
            .collect())
    }

    /// Pauses a schedule: it stops firing, and ticks while paused are not run later.
    pub async fn pause_schedule(&self, name: &str) -> Result<ScheduleRecord> {
        self.store().schedule_control(name, ScheduleAction::Pause).await
    }

    /// Resumes a paused schedule from its next tick.
    pub async fn resume_schedule(&self, name: &str) -> Result<ScheduleRecord> {
        self.store().schedule_control(name, ScheduleAction::Resume).await
    }

    /// Asks the leader to run the schedule once now (its next pass does).
    pub async fn trigger_schedule(&self, name: &str) -> Result<ScheduleRecord> {
        self.store().schedule_control(name, ScheduleAction::Trigger).await
    }
}
