//! The admin HTTP endpoints (feature `admin`): `/metrics` in the Prometheus text format, `/healthz`
//! (the process answers) and `/readyz` (every readiness check passes: the store answers, workers run
//! and reach their store).
//!
//! The server binds to loopback (`127.0.0.1:9464`) unless told otherwise, and has the same lifecycle as
//! a worker: [`AdminServer::start`], [`AdminServer::stop`]. It renders the recorder the application
//! installed; leasehold never installs one itself:
//!
//! ```no_run
//! # async fn demo(store: leasehold::sqlite::SqliteStore) -> leasehold::Result<()> {
//! use leasehold::admin::AdminServer;
//! let handle = leasehold::telemetry::prometheus_builder().install_recorder().expect("one recorder per process");
//! let admin = AdminServer::builder().metrics(handle).store_check(store).build();
//! let addr = admin.start().await?;
//! println!("metrics on http://{addr}/metrics");
//! # admin.stop().await; Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::future::BoxFuture;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use leasehold_core::{Error, Result, TaskStore};

/// Where the server listens unless configured otherwise.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// A readiness check: `Ok` when ready, otherwise why not.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, std::result::Result<(), String>> + Send + Sync>;

/// Builds an [`AdminServer`].
pub struct AdminBuilder {
    addr: SocketAddr,
    metrics: Option<PrometheusHandle>,
    checks: Vec<(String, ReadyCheck)>,
}

impl AdminBuilder {
    /// Listens on `addr` instead of `127.0.0.1:9464`; port 0 picks a free port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Serves this recorder's exposition on `/metrics`; without it `/metrics` answers 404.
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Adds a readiness check named `name`.
    pub fn ready_check(mut self, name: impl Into<String>, check: ReadyCheck) -> Self {
        self.checks.push((name.into(), check));
        self
    }

    /// Ready only while `store` answers a read.
    pub fn store_check<S: TaskStore>(self, store: S) -> Self {
        let name = format!("store ({})", store.backend_name());
        self.ready_check(
            name,
            Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.task_due_exists(Vec::new()).await.map(|_| ()).map_err(|e| e.to_string()) })
            }),
        )
    }

    /// Ready only while `health` says its worker runs and reaches its store.
    pub fn worker_check(self, health: crate::worker::WorkerHealth) -> Self {
        let name = format!("worker {}", health.worker_id());
        self.ready_check(
            name,
            Arc::new(move || {
                let h = health.clone();
                Box::pin(async move { h.check() })
            }),
        )
    }

    /// The server, not started yet.
    pub fn build(self) -> AdminServer {
        AdminServer {
            addr: self.addr,
            state: Arc::new(AppState { metrics: self.metrics, checks: self.checks }),
            running: Mutex::new(None),
        }
    }
}

struct AppState {
    metrics: Option<PrometheusHandle>,
    checks: Vec<(String, ReadyCheck)>,
}

/// The admin HTTP server.
pub struct AdminServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>, SocketAddr)>>,
}

impl AdminServer {
    /// A builder listening on loopback by default.
    pub fn builder() -> AdminBuilder {
        AdminBuilder { addr: DEFAULT_ADDR, metrics: None, checks: Vec::new() }
    }

    /// Binds and starts serving; answers the address it listens on. Calling it on a started server
    /// answers the same address.
    pub async fn start(&self) -> Result<SocketAddr> {
        let mut running = self.running.lock().await;
        if let Some((_, _, addr)) = running.as_ref() {
            return Ok(*addr);
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|e| Error::Connect(format!("admin server cannot listen on {}: {e}", self.addr)))?;
        let addr = listener.local_addr().map_err(|e| Error::Connect(e.to_string()))?;
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "admin server failed");
            }
        });
        tracing::info!(%addr, "admin server listening");
        *running = Some((stop, handle, addr));
        Ok(addr)
    }

    /// Stops serving. Safe before `start` and more than once.
    pub async fn stop(&self) {
        if let Some((stop, handle, _)) = self.running.lock().await.take() {
            stop.cancel();
            let _ = handle.await;
        }
    }
}

impl Drop for AdminServer {
    /// Dropped without [`AdminServer::stop`]: stops serving without waiting.
    fn drop(&mut self) {
        if let Some((stop, _, _)) = self.running.get_mut().take() {
            stop.cancel();
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    const CONTENT_TYPE: (&str, &str) = ("content-type", "text/plain; version=0.0.4; charset=utf-8");
    match &state.metrics {
        Some(handle) => {
            handle.run_upkeep();
            (StatusCode::OK, [CONTENT_TYPE], handle.render())
        }
        None => (StatusCode::NOT_FOUND, [CONTENT_TYPE], "no metrics recorder configured\n".into()),
    }
}

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    // all at once, each bounded: a store that hangs must not hang the probe
    let answers = futures::future::join_all(state.checks.iter().map(|(name, check)| async move {
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(a) => a,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (name, answer)
    }))
    .await;
    let mut body = String::new();
    let mut ready = true;
    for (name, answer) in answers {
        match answer {
            Ok(()) => body.push_str(&format!("ok: {name}\n")),
            Err(why) => {
                ready = false;
                body.push_str(&format!("not ready: {name}: {why}\n"));
            }
        }
    }
    if state.checks.is_empty() {
        body.push_str("ok: no checks configured\n");
    }
    (if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, body)
}
