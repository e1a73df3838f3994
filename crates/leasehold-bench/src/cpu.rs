//! The machine's CPU time over a phase, from Linux's `/proc`: how busy the cores were, and the CPU
//! time per task of the whole machine and of this process (the client and the worker). With the
//! database on the same cores, this tells a drain bound by CPU from one bound by waiting, and which
//! side spends the CPU. Elsewhere the figures are absent.

/// Clock ticks per second of `/proc` (`USER_HZ`, 100 on every Linux build that matters here).
const TICKS_PER_S: f64 = 100.0;

/// The machine's and this process's CPU ticks at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    busy: u64,
    idle: u64,
    iowait: u64,
    /// Taken by the hypervisor for other guests: neither ours nor idle.
    steal: u64,
    own: u64,
}

/// A phase's CPU, per task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuCost {
    /// Share of the cores' time spent running anything, in percent.
    pub(crate) busy_pct: f64,
    /// Share spent idle waiting for I/O, in percent.
    pub(crate) iowait_pct: f64,
    /// Share the hypervisor gave to other guests, in percent.
    pub(crate) steal_pct: f64,
    /// CPU time of the whole machine per task, microseconds.
    pub(crate) us_per_task: f64,
    /// CPU time of this process per task, microseconds.
    pub(crate) own_us_per_task: f64,
}

impl CpuMark {
    /// What a phase's line prints after its figure: ` (cost)` for `tasks` tasks since `mark`, or nothing
    /// where `/proc` does not tell.
    pub(crate) fn note(mark: Option<Self>, tasks: u64) -> String {
        mark.and_then(|m| m.since(tasks)).map_or_else(String::new, |c| format!(" ({c})"))
    }

    /// The ticks now; `None` where `/proc` cannot be read.
    pub(crate) fn take() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu user nice system idle iowait irq softirq steal ...
        let t: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map_while(|x| x.parse().ok()).collect();
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // after the command's name in parentheses: state is field 3, utime and stime are 14 and 15
        let f: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
        Some(Self {
            busy: t.first()? + t.get(1)? + t.get(2)? + t.get(5)? + t.get(6)?,
            idle: *t.get(3)?,
            iowait: *t.get(4)?,
            steal: *t.get(7)?,
            own: utime + stime,
        })
    }

    /// The CPU since this mark, for `tasks` tasks.
    pub(crate) fn since(self, tasks: u64) -> Option<CpuCost> {
        let now = Self::take()?;
        let ticks = |a: u64, b: u64| (a - b) as f64;
        let (busy, idle) = (ticks(now.busy, self.busy), ticks(now.idle, self.idle));
        let (iowait, steal) = (ticks(now.iowait, self.iowait), ticks(now.steal, self.steal));
        let all = (busy + idle + iowait + steal).max(1.0);
        let per_task = |ticks: f64| ticks / TICKS_PER_S * 1e6 / tasks.max(1) as f64;
        Some(CpuCost {
            busy_pct: 100.0 * busy / all,
            iowait_pct: 100.0 * iowait / all,
            steal_pct: 100.0 * steal / all,
            us_per_task: per_task(busy),
            own_us_per_task: per_task((now.own - self.own) as f64),
        })
    }
}

impl std::fmt::Display for CpuCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cores {:.0}% busy, {:.0}% waiting for I/O, {:.0}% stolen; {:.1} us of CPU per task, {:.1} us in this \
             process",
            self.busy_pct, self.iowait_pct, self.steal_pct, self.us_per_task, self.own_us_per_task
        )
    }
}
