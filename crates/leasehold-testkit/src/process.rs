//! Real worker processes for crash and pause tests: started, paused, resumed and killed by pid.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

/// How a test worker process runs (passed as environment variables to `leasehold-test-worker`).
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// Tasks at once.
    pub concurrency: u32,
    /// Lease `L`.
    pub lease: Duration,
    /// Heartbeat `H`.
    pub heartbeat: Duration,
    /// Margin `M`.
    pub margin: Duration,
    /// Cancel grace.
    pub grace: Duration,
    /// Poll interval.
    pub poll: Duration,
    /// Also run a scheduler with an every-second schedule.
    pub schedule_every_second: bool,
    /// A planted bug for the checker's own test: complete by id, without the token.
    pub planted_bug: bool,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(400),
            margin: Duration::from_millis(700),
            grace: Duration::from_millis(300),
            poll: Duration::from_millis(200),
            schedule_every_second: false,
            planted_bug: false,
        }
    }
}

/// A running `leasehold-test-worker`. Dropping it kills the process.
pub struct WorkerProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// The name it records on its effects and attempts.
    pub name: String,
}

impl WorkerProcess {
    /// Starts the worker binary `bin` on `db_url` and waits until it reports that it runs.
    pub fn spawn(bin: &str, db_url: &str, name: &str, opts: &ProcessOptions) -> Self {
        let ms = |d: Duration| d.as_millis().to_string();
        let verbose = std::env::var_os("LEASEHOLD_TEST_VERBOSE").is_some();
        let mut cmd = Command::new(bin);
        if opts.schedule_every_second {
            cmd.env("SCHEDULE_EVERY_SECOND", "1");
        }
        if opts.planted_bug {
            cmd.env("LEASEHOLD_PLANTED_BUG", "unfenced-completion");
        }
        let mut child = cmd
            .env("LEASEHOLD_DATABASE_URL", db_url)
            .env("WORKER_NAME", name)
            .env("CONCURRENCY", opts.concurrency.to_string())
            .env("LEASE_MS", ms(opts.lease))
            .env("HEARTBEAT_MS", ms(opts.heartbeat))
            .env("MARGIN_MS", ms(opts.margin))
            .env("GRACE_MS", ms(opts.grace))
            .env("POLL_MS", ms(opts.poll))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if verbose { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "worker {name} did not start: {line:?}");
        Self { child, stdout, name: name.to_owned() }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `SIGKILL`, then reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `SIGSTOP`: the process freezes, as in a long GC or a suspended VM.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// `SIGCONT`.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// `SIGTERM`: a graceful stop; answers the stats line it prints on the way out.
    pub fn terminate(mut self) -> String {
        self.signal("TERM");
        let mut out = String::new();
        let mut line = String::new();
        while self.stdout.read_line(&mut line).unwrap_or(0) > 0 {
            out.push_str(&line);
            line.clear();
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "worker {} exited with {status}", self.name);
        out
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(ok.success(), "kill -{sig} {} failed", self.pid());
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("CONT");
            self.kill();
        }
    }
}
