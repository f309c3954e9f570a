//! Listeners: the agent-facing proxy port and the separate admin port.
//!
//! This module owns binding both listeners, serving HTTP/1.1 connections into
//! [`Gateway::handle`], the admin router (axum: `/healthz`, `/v1/status`, and the approval
//! routes of [`crate::approvals`]) and graceful shutdown. The agent-facing listener serves only the proxy path; admin routes exist
//! only on the admin listener, so nothing an agent can reach approves or configures.
//!
//! It must never route by `Host` or serve an admin route on the agent-facing port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::AuditStats;
use crate::config::Config;
use crate::error::Error;
use crate::forward::ForwardProxy;
use crate::pipeline::Gateway;

/// What the admin status endpoint reports.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// `(name, environment, base_url)` of each upstream.
    pub upstreams: Vec<(String, String, String)>,
    /// Audit commit counters, when auditing through [`crate::audit::GroupCommit`].
    pub audit: Option<Arc<AuditStats>>,
    /// When the server started.
    pub started: Instant,
    /// The approval service (from [`Gateway::approvals`]), for the approval routes.
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
    /// The admin credential the approval routes require.
    pub admin_token: Option<Arc<crate::approvals::AdminToken>>,
    /// Inventory lookups (upstream name, lookup), whose counters the status reports.
    pub lookups: Vec<(String, Arc<crate::inventory::lookup::Lookup>)>,
}

impl AdminState {
    /// Status for `config`.
    pub fn new(config: &Config, audit: Option<Arc<AuditStats>>) -> Self {
        Self {
            upstreams: config.upstreams.iter().map(|u| (u.name.to_string(), u.environment.to_string(), u.base_url.clone())).collect(),
            audit,
            started: Instant::now(),
            approvals: None,
            admin_token: None,
            lookups: Vec::new(),
        }
    }

    /// Report the counters of these inventory lookups (from [`Gateway::inventory_lookups`]).
    pub fn with_lookups(mut self, lookups: Vec<(String, Arc<crate::inventory::lookup::Lookup>)>) -> Self {
        self.lookups = lookups;
        self
    }

    /// Serve the approval routes for `approvals`, guarded by `admin_token`. Without a
    /// token every approval route answers 401.
    pub fn with_approvals(mut self, approvals: Option<Arc<crate::approvals::Approvals>>, admin_token: Option<crate::approvals::AdminToken>) -> Self {
        self.approvals = approvals;
        self.admin_token = admin_token.map(Arc::new);
        self
    }
}

/// A running gateway: both listeners and their tasks.
#[derive(Debug)]
pub struct Running {
    /// The bound agent-facing address.
    pub agent_addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let in-flight requests finish, and wait for both listeners.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// How long the agent-facing side waits for a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head buffered.
const MAX_HEAD: usize = 64 * 1024;

/// Bind both listeners and start serving.
pub async fn start(gateway: Arc<Gateway>, listen: SocketAddr, admin_listen: SocketAddr, admin: AdminState) -> Result<Running, Error> {
    start_with_forward(gateway, None, listen, admin_listen, admin).await
}

/// [`start`], with forward-proxy mode: `CONNECT` on the agent-facing listener goes to
/// `forward` (without it, `CONNECT` is refused by the pipeline like any non-origin-form target).
pub async fn start_with_forward(
    gateway: Arc<Gateway>,
    forward: Option<Arc<ForwardProxy>>,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    admin: AdminState,
) -> Result<Running, Error> {
    let agent = TcpListener::bind(listen).await.map_err(|source| Error::Bind { addr: listen, source })?;
    let admin_l = TcpListener::bind(admin_listen).await.map_err(|source| Error::Bind { addr: admin_listen, source })?;
    let agent_addr = agent.local_addr().map_err(|source| Error::Bind { addr: listen, source })?;
    let admin_addr = admin_l.local_addr().map_err(|source| Error::Bind { addr: admin_listen, source })?;
    let (shutdown, rx) = watch::channel(false);

    let agent_task = tokio::spawn(serve_agents(agent, gateway, forward, rx.clone()));
    let mut admin_rx = rx;
    let router = admin_router(admin);
    let admin_task = tokio::spawn(async move {
        let stop = async move {
            let _ = admin_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(admin_l, router).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    });
    tracing::info!(%agent_addr, %admin_addr, "airlock gateway listening");
    Ok(Running { agent_addr, admin_addr, shutdown, tasks: vec![agent_task, admin_task] })
}

async fn serve_agents(listener: TcpListener, gateway: Arc<Gateway>, forward: Option<Arc<ForwardProxy>>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and similar: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let fwd = forward.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let gw = gw.clone();
                let fwd = fwd.clone();
                async move {
                    // Forward-proxy mode: CONNECT opens a tunnel (see crate::forward).
                    if let (true, Some(f)) = (req.method() == hyper::Method::CONNECT, fwd) {
                        return Ok::<_, Infallible>(f.connect(req).await);
                    }
                    Ok::<_, Infallible>(gw.handle(req).await)
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// The admin router. Only ever bound to the admin listener.
pub fn admin_router(state: AdminState) -> axum::Router {
    let approvals = crate::approvals::admin_routes(state.approvals.clone(), state.admin_token.clone());
    axum::Router::new().route("/healthz", get(|| async { "ok\n" })).route("/v1/status", get(status)).with_state(Arc::new(state)).merge(approvals)
}

async fn status(State(s): State<Arc<AdminState>>) -> Json<serde_json::Value> {
    let audit = s.audit.as_ref().map(|a| {
        json!({
            "committed": a.committed.load(Ordering::Relaxed),
            "batches": a.batches.load(Ordering::Relaxed),
            "failed": a.failed.load(Ordering::Relaxed),
        })
    });
    let upstreams: Vec<_> = s.upstreams.iter().map(|(n, e, u)| json!({ "name": n, "environment": e, "base_url": u })).collect();
    let lookups: Vec<_> = s
        .lookups
        .iter()
        .map(|(n, l)| {
            let c = l.stats();
            json!({
                "upstream": n,
                "requests": c.requests.load(Ordering::Relaxed),
                "cache_hits": c.cache_hits.load(Ordering::Relaxed),
                "attributed": c.attributed.load(Ordering::Relaxed),
                "not_found": c.not_found.load(Ordering::Relaxed),
                "failed": c.failed.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "upstreams": upstreams,
        "audit": audit,
        "inventory_lookups": lookups,
    }))
}
