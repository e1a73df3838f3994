//! The dashboards of `dashboards/` against the code and a real Prometheus:
//! - every panel query parses as PromQL once Grafana's variables are substituted (`promtool check
//!   rules` on a rules file made of them), and uses only metrics and labels of the catalog;
//! - the exposition of a running example passes `promtool check metrics`;
//! - a Prometheus started here scrapes the example while it generates contention, and every panel's
//!   query returns data.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasehold::telemetry::{CATALOG, MetricType};
use leasehold_testkit::pg::TestDb;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Every dashboard: (file name, parsed JSON).
fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = repo_root().join("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let json: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "expected the lock-contention and queue-health dashboards in {}", dir.display());
    out
}

/// Every panel query: (dashboard, panel title, expr as written).
fn queries() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, dash) in dashboards() {
        let panels = dash["panels"].as_array().unwrap_or_else(|| panic!("{file} has no panels"));
        for p in panels.iter().flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten())) {
            let Some(targets) = p["targets"].as_array() else { continue };
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{file}/{title}: a target has no expr"));
                out.push((file.clone(), title.clone(), expr.to_owned()));
            }
        }
    }
    assert!(out.len() >= 20, "only {} panel queries found", out.len());
    out
}

/// Grafana's variables replaced by what it would send for a short window.
fn substitute(expr: &str, rate_interval: &str, range: &str) -> String {
    expr.replace("$__rate_interval", rate_interval)
        .replace("${__rate_interval}", rate_interval)
        .replace("$__interval", "15s")
        .replace("${__interval}", "15s")
        .replace("$__range", range)
        .replace("${__range}", range)
        .replace("${backend}", ".*")
        .replace("$backend", ".*")
        .replace("${queue}", ".*")
        .replace("$queue", ".*")
}

/// The metric names an expression mentions, as written (with `_bucket`, `_sum`, `_count`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("leasehold_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(expr[start..end].to_owned());
        i = end;
    }
    names
}

/// The catalog entry behind an exported series name.
fn catalog_entry(series: &str) -> Option<&'static leasehold::telemetry::MetricDef> {
    CATALOG.iter().find(|m| match m.kind {
        MetricType::Histogram => {
            [&*format!("{}_bucket", m.name), &*format!("{}_sum", m.name), &*format!("{}_count", m.name)]
                .contains(&series)
        }
        _ => m.name == series,
    })
}

/// The label names used in the selectors of `name{...}`.
fn selector_labels(expr: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(pos) = rest.find(name) {
        let after = &rest[pos + name.len()..];
        let next = after.chars().next();
        if next == Some('{') {
            let inner = &after[1..after.find('}').unwrap()];
            for m in inner.split(',') {
                let label: String = m.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !label.is_empty() {
                    out.push(label);
                }
            }
        }
        rest = after;
    }
    out
}

#[test]
fn every_query_uses_catalog_metrics_and_the_datasource_variable() {
    for (file, dash) in dashboards() {
        let vars = dash["templating"]["list"].as_array().unwrap_or_else(|| panic!("{file} has no variables"));
        assert!(
            vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
            "{file} has no `datasource` variable"
        );
        let text = dash.to_string();
        assert!(!text.contains("\"uid\":\"prometheus\""), "{file} names a datasource instead of ${{datasource}}");
        for p in dash["panels"].as_array().unwrap() {
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}/{}: panel datasource", p["title"]);
            }
        }
    }
    let mut problems = Vec::new();
    for (file, title, expr) in queries() {
        let names = metric_names(&expr);
        if names.is_empty() {
            problems.push(format!("{file}/{title}: no leasehold metric in {expr}"));
        }
        for n in names {
            let Some(def) = catalog_entry(&n) else {
                problems.push(format!("{file}/{title}: {n} is not emitted by leasehold"));
                continue;
            };
            for label in selector_labels(&expr, &n) {
                let ok = def.labels.contains(&label.as_str()) || (label == "le" && n.ends_with("_bucket"));
                if !ok {
                    problems.push(format!("{file}/{title}: {n} has no label {label}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "dashboard queries disagree with the catalog:\n{}", problems.join("\n"));
}

#[test]
fn every_query_parses_as_promql() {
    let dir = scratch_dir("promql");
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (_, _, expr)) in queries().iter().enumerate() {
        let e = substitute(expr, "1m", "1h");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new(promtool()).arg("check").arg("rules").arg(&file).output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool rejected a dashboard query:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scraping_the_example_has_data_for_every_panel() {
    let db = TestDb::create().await;
    let mut example = Guard(
        Command::new(env!("CARGO_BIN_EXE_example-observability"))
            .env("DATABASE_URL", db.url())
            .env("LEASEHOLD_ADMIN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the example starts"),
    );
    let mut line = String::new();
    BufReader::new(example.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no admin address in {line:?}"));
    assert!(addr.ip().is_loopback());

    let (status, _) = http_get(addr, "/healthz");
    assert_eq!(status, 200);
    let ready = wait_for(Duration::from_secs(20), || (http_get(addr, "/readyz").0 == 200).then_some(()));
    assert!(ready.is_some(), "/readyz never answered 200: {:?}", http_get(addr, "/readyz"));

    // the exposition itself is valid for Prometheus
    let (_, exposition) = http_get(addr, "/metrics");
    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for m in CATALOG.iter().filter(|m| m.kind == MetricType::Histogram) {
        if exposition.contains(&format!("# TYPE {} ", m.name)) {
            assert!(exposition.contains(&format!("# TYPE {} histogram", m.name)), "{} is not a histogram", m.name);
        }
    }

    // a real Prometheus scraping the example
    let dir = scratch_dir("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: leasehold\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let prom_addr = free_loopback_addr();
    let _prometheus = Guard(
        Command::new(prometheus())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    let queries = queries();
    let mut missing: Vec<String> = Vec::new();
    let done = wait_for(Duration::from_secs(120), || {
        missing = queries
            .iter()
            .filter(|(_, _, expr)| !has_data(prom_addr, &substitute(expr, "10s", "2m")))
            .map(|(file, title, expr)| format!("{file}/{title}: {expr}"))
            .collect();
        missing.is_empty().then_some(())
    });
    assert!(done.is_some(), "panels without data after two minutes:\n{}", missing.join("\n"));

    // the load really contended: these are counts of events, not just series registered at zero
    for (what, q) in [
        ("claims met other claimers", r#"sum(increase(leasehold_claims_total{outcome="contended"}[5m])) > 0"#),
        (
            "a scheduler found the lock held",
            r#"sum(increase(leasehold_lock_acquisitions_total{outcome="busy"}[5m])) > 0"#,
        ),
        ("leadership changed hands", "sum(increase(leasehold_leader_changes_total[5m])) > 1"),
        ("lock waits were measured", "sum(increase(leasehold_lock_wait_seconds_count[5m])) > 1"),
        ("version checks conflicted", "sum(increase(leasehold_version_conflicts_total[5m])) > 0"),
        ("a lease was lost", "sum(increase(leasehold_leases_lost_total[5m])) > 0"),
        ("leases were renewed", r#"sum(increase(leasehold_lease_renewals_total{outcome="renewed"}[5m])) > 0"#),
        ("renewal lag was measured", "sum(increase(leasehold_lease_renewal_lag_seconds_count[5m])) > 0"),
        ("idempotency keys were hit", r#"sum(increase(leasehold_idempotency_total{outcome="hit"}[5m])) > 0"#),
        ("keyed enqueues conflicted", r#"sum(increase(leasehold_idempotency_total{outcome="conflict"}[5m])) > 0"#),
        ("tasks were retried", r#"sum(increase(leasehold_task_outcomes_total{outcome="retried"}[5m])) > 0"#),
        ("tasks were discarded", r#"sum(increase(leasehold_task_outcomes_total{outcome="discarded"}[5m])) > 0"#),
        ("cron ticks were enqueued", r#"sum(increase(leasehold_cron_ticks_total{outcome="enqueued"}[5m])) > 0"#),
        ("queue depth was sampled", "sum(leasehold_queue_depth) >= 0"),
    ] {
        let seen = wait_for(Duration::from_secs(60), || has_data(prom_addr, q).then_some(()));
        assert!(seen.is_some(), "the example never showed that {what} ({q})");
    }
}

fn has_data(prom: SocketAddr, query: &str) -> bool {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={}", encode(query)));
    if status != 200 {
        return false;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    // a series of NaN (a quantile of nothing) is no data
    v["data"]["result"]
        .as_array()
        .is_some_and(|r| r.iter().any(|s| s["value"][1].as_str().is_some_and(|x| !x.eq_ignore_ascii_case("nan"))))
}

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A plain HTTP/1.1 GET: (status, body); (0, "") when nothing answers.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return (status, String::new()) };
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, dechunk(body));
    }
    (status, body.to_owned())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn free_loopback_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leasehold-dashboards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: `apt-get install prometheus` (./scripts/test.sh installs it)")
    })
}

fn promtool() -> PathBuf {
    tool("promtool")
}

fn prometheus() -> PathBuf {
    tool("prometheus")
}

/// Kills the child it holds when dropped (a process this test started).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
