//! [`Schedule`]: a singleton scheduled job, defined in code and validated when built.

use leasehold_core::schedule::{CompiledSchedule, MissedPolicy, OverlapPolicy, ScheduleDef};
use leasehold_core::{DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, Error, Result};

use crate::job::Job;

/// A schedule: a name, a cron expression in a time zone, the job each tick runs, and its policies.
///
/// ```
/// use leasehold::cron::{MissedPolicy, OverlapPolicy, Schedule};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Report;
/// # impl leasehold::Job for Report { const KIND: &'static str = "report"; type State = ();
/// #   async fn run(self, _: leasehold::JobContext<()>) -> leasehold::JobResult { Ok(leasehold::Outcome::Complete) } }
/// let nightly = Schedule::builder("nightly-report", "30 2 * * *")
///     .time_zone("Europe/Berlin")
///     .missed(MissedPolicy::Coalesce)
///     .overlap(OverlapPolicy::Skip)
///     .job(&Report)
///     .unwrap();
/// assert!(Schedule::builder("broken", "61 * * * *").job(&Report).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Schedule {
    pub(crate) def: ScheduleDef,
    pub(crate) compiled: CompiledSchedule,
}

impl Schedule {
    /// A schedule named `name` firing on `expression` (5 fields, or 6 with seconds first), in UTC,
    /// skipping missed ticks and overlapping runs unless set otherwise.
    pub fn builder(name: impl Into<String>, expression: impl Into<String>) -> ScheduleBuilder {
        ScheduleBuilder {
            name: name.into(),
            expression: expression.into(),
            time_zone: "UTC".into(),
            queue: None,
            max_attempts: None,
            missed: MissedPolicy::Skip,
            overlap: OverlapPolicy::Skip,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// Its definition.
    pub fn def(&self) -> &ScheduleDef {
        &self.def
    }
}

/// Builds a [`Schedule`].
#[derive(Clone, Debug)]
pub struct ScheduleBuilder {
    name: String,
    expression: String,
    time_zone: String,
    queue: Option<String>,
    max_attempts: Option<i32>,
    missed: MissedPolicy,
    overlap: OverlapPolicy,
}

impl ScheduleBuilder {
    /// The IANA time zone the expression is read in (default `"UTC"`).
    pub fn time_zone(mut self, tz: impl Into<String>) -> Self {
        self.time_zone = tz.into();
        self
    }
    /// The queue of the runs (default: the job's, then `"default"`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }
    /// Attempts of each run (default: the job's, then 25).
    pub fn max_attempts(mut self, n: i32) -> Self {
        self.max_attempts = Some(n);
        self
    }
    /// What to do with ticks missed while no instance ran.
    pub fn missed(mut self, policy: MissedPolicy) -> Self {
        self.missed = policy;
        self
    }
    /// What to do when a tick comes while the previous run is unfinished.
    pub fn overlap(mut self, policy: OverlapPolicy) -> Self {
        self.overlap = policy;
        self
    }

    /// The schedule running `job` on every tick. An invalid expression or time zone is an error here,
    /// naming the schedule and the problem.
    pub fn job<J: Job>(self, job: &J) -> Result<Schedule> {
        let opts = J::options();
        let def = ScheduleDef {
            name: self.name,
            expression: self.expression,
            time_zone: self.time_zone,
            kind: J::KIND.to_owned(),
            payload: serde_json::to_value(job)?,
            queue: self.queue.or(opts.queue).unwrap_or_else(|| DEFAULT_QUEUE.to_owned()),
            max_attempts: self.max_attempts.or(opts.max_attempts).unwrap_or(DEFAULT_MAX_ATTEMPTS),
            missed: self.missed,
            overlap: self.overlap,
        };
        let compiled = def.compile()?;
        if def.name.chars().any(char::is_control) {
            return Err(Error::InvalidConfig(format!("schedule name {:?} has control characters", def.name)));
        }
        Ok(Schedule { def, compiled })
    }
}
