//! A PostgreSQL cluster of the test's own: `initdb` into a temporary folder, served on a free loopback
//! port, so a test may stop it hard (`pg_ctl stop -m immediate`, a crash) and start it again without
//! touching the shared server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A cluster this process created; stopped and removed when dropped.
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Creates and starts a cluster with durable defaults (`fsync`, `synchronous_commit` on).
    /// Panics with the reason when the PostgreSQL server binaries are missing.
    pub fn start_new() -> Self {
        let bin = server_bin_dir().expect("PostgreSQL server binaries (initdb, pg_ctl) are not installed");
        let dir = std::env::temp_dir().join(format!("leasehold-cluster-{}-{}", std::process::id(), nonce()));
        std::fs::create_dir_all(&dir).unwrap();
        // initdb refuses to run as root: the cluster then belongs to the `postgres` user
        let as_postgres = is_root();
        if as_postgres {
            chown_postgres(&dir);
        }
        let port = free_port();
        let c = Self { dir, bin, port, as_postgres };
        let data = c.data();
        c.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nmax_connections = 200\nfsync = on\nsynchronous_commit = on\n",
            c.dir.display()
        );
        std::fs::write(Path::new(&data).join("postgresql.auto.conf"), conf).unwrap();
        c.start();
        c
    }

    /// The admin URL (database `postgres`, user `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the stopped server and waits until it accepts connections.
    pub fn start(&self) {
        let log = self.dir.join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// Stops the server the way a crash would: no checkpoint, every connection cut.
    pub fn stop_immediate(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// A crash and a restart after `down`.
    pub fn crash_and_restart(&self, down: Duration) {
        self.stop_immediate();
        std::thread::sleep(down);
        self.start();
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let out = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&exe).args(args).output()
        } else {
            Command::new(&exe).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `initdb` and `pg_ctl` live: Debian keeps them out of PATH.
fn server_bin_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    candidates.sort();
    candidates.reverse();
    if let Some(p) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&p));
    }
    candidates.into_iter().find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chown_postgres(dir: &Path) {
    let ok = Command::new("chown").args(["-R", "postgres"]).arg(dir).status().is_ok_and(|s| s.success());
    assert!(ok, "cannot give {} to the postgres user", dir.display());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nonce() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
}
