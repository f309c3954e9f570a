//! Forward-proxy mode: `HTTPS_PROXY`-style `CONNECT` for tools that cannot change their base URL.
//!
//! ```text
//! CONNECT host:port ─► upstream host? ──yes─► 200, TLS with a leaf for `host` (SNI must be `host`)
//!                   │                          └► each request: pick the upstream by path and the
//!                   │                             task's environment, rewrite `/p` → `/<upstream>/p`,
//!                   │                             then the SAME pipeline as reverse-proxy mode
//!                   ├► pass_through?  ──yes─► 200, blind TCP tunnel (no injection), audited + bytes
//!                   └► otherwise ───────────► 403 {"error":"unknown_host"}, audited
//! ```
//!
//! This module owns the `CONNECT` answer, TLS termination with leaves minted by the local
//! CA ([`crate::ca`]), the SNI check, the mapping from `(host, port, path, task
//! environment)` to an upstream route, and pass-through tunnels. The only difference from
//! reverse-proxy mode is routing: a decrypted request becomes the origin-form request
//! `/<upstream><rest>` that a reverse-proxy client would have sent, and goes into
//! [`Gateway::handle`] unchanged — verification, environment binding, classification,
//! policy, durable audit, injection, forwarding and redaction all happen there.
//!
//! It must never terminate TLS for a host that is not an upstream's, never present a leaf
//! for a name other than the `CONNECT` host, never route by `Host` (a `Host` that differs
//! from the `CONNECT` target is refused), never inject into a pass-through tunnel, and
//! never decide access itself: choosing among upstreams that share a host is a routing
//! choice, and the pipeline still verifies the token and the environment binding.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_store::AuditEvent;
use airlock_types::Environment;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio::net::TcpStream;

use crate::audit::AuditSink;
use crate::ca::{LEAF_LIFETIME, LocalCa};
use crate::client::BoxError;
use crate::codes::RefusalCode;
use crate::config::{Config, Injection, upstream_host_port};
use crate::error::Error;
use crate::pipeline::{Gateway, REQUEST_ID_HEADER, ResBody};
use crate::ports::TokenVerifier;

/// A minted leaf is replaced when less than this much of its lifetime is left.
const LEAF_REFRESH_MARGIN: Duration = Duration::from_secs(3600);
/// How long a pass-through connect may take.
const PASS_THROUGH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake inside a tunnel may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the decrypted side waits for a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head buffered inside a tunnel.
const MAX_HEAD: usize = 64 * 1024;

/// One upstream as seen from its host: enough to route by path and pick by environment.
#[derive(Debug, Clone)]
struct HostUpstream {
    name: String,
    base_path: String,
    environment: Environment,
    injection: Injection,
}

/// The forward proxy: which hosts are terminated, which are passed through, and the CA.
pub struct ForwardProxy {
    gateway: Arc<Gateway>,
    verifier: Arc<dyn TokenVerifier>,
    audit: Arc<dyn AuditSink>,
    ca: Arc<LocalCa>,
    hosts: HashMap<(String, u16), Vec<HostUpstream>>,
    pass_through: HashSet<(String, u16)>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    leaves: Mutex<HashMap<String, (Arc<CertifiedKey>, Instant)>>,
}

impl std::fmt::Debug for ForwardProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardProxy").field("hosts", &self.hosts.keys().collect::<Vec<_>>()).field("pass_through", &self.pass_through).finish_non_exhaustive()
    }
}

impl ForwardProxy {
    /// Build the forward proxy for `config`'s upstreams and pass-through list.
    ///
    /// `verifier` and `audit` must be the same ones the gateway uses: the verifier only
    /// picks among upstreams sharing a host (the pipeline verifies again), the sink records
    /// tunnel-level events (refused `CONNECT`s, SNI mismatches, pass-through tunnels).
    pub fn new(
        config: &Config,
        gateway: Arc<Gateway>,
        verifier: Arc<dyn TokenVerifier>,
        audit: Arc<dyn AuditSink>,
        ca: Arc<LocalCa>,
    ) -> Result<Arc<Self>, Error> {
        let mut hosts: HashMap<(String, u16), Vec<HostUpstream>> = HashMap::new();
        for u in &config.upstreams {
            hosts.entry(upstream_host_port(u)).or_default().push(HostUpstream {
                name: u.name.to_string(),
                base_path: u.base_path.clone(),
                environment: u.environment.clone(),
                injection: u.injection.clone(),
            });
        }
        // Warm the leaf cache so the first tunnel does not pay for key generation.
        let proxy = Self {
            gateway,
            verifier,
            audit,
            ca,
            hosts,
            pass_through: config.pass_through.iter().cloned().collect(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            leaves: Mutex::new(HashMap::new()),
        };
        for (host, _) in proxy.hosts.keys() {
            proxy.leaf(host)?;
        }
        Ok(Arc::new(proxy))
    }

    /// Answer one `CONNECT` request from the agent-facing listener.
    ///
    /// The connection must be served with upgrades enabled; the tunnel runs on its own task.
    pub async fn connect<B>(self: Arc<Self>, req: Request<B>) -> Response<ResBody>
    where
        B: Body + Send + 'static,
    {
        let request_id = crate::audit::new_id();
        let target = req.uri().authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
        if req.method() != Method::CONNECT {
            return answer(&request_id, RefusalCode::MethodNotAllowed, "only CONNECT opens a tunnel");
        }
        let Some((host, port)) = crate::config::parse_host_port(&target) else {
            let msg = "CONNECT needs an authority-form target host:port";
            self.connect_event(&request_id, &target, "denied", json!({ "code": "bad_connect" }));
            return answer(&request_id, RefusalCode::BadConnect, msg);
        };
        let key = (host.clone(), port);

        if self.hosts.contains_key(&key) {
            let leaf = match self.leaf(&host) {
                Ok(l) => l,
                Err(e) => {
                    self.connect_event(&request_id, &target, "denied", json!({ "code": "ca_error" }));
                    return answer(&request_id, RefusalCode::CaError, &e.to_string());
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(up) => this.terminate(TokioIo::new(up), host, port, leaf).await,
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            return tunnel_ok();
        }

        if self.pass_through.contains(&key) {
            let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            let tcp = match tokio::time::timeout(PASS_THROUGH_CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    self.connect_event(&request_id, &target, "denied", json!({ "code": "upstream_unreachable", "mode": "pass_through" }));
                    return answer(&request_id, RefusalCode::UpstreamUnreachable, &format!("cannot connect to pass-through host {target}: {e}"));
                }
                Err(_) => {
                    self.connect_event(&request_id, &target, "denied", json!({ "code": "upstream_timeout", "mode": "pass_through" }));
                    return answer(&request_id, RefusalCode::UpstreamTimeout, &format!("connecting to pass-through host {target} timed out"));
                }
            };
            let _ = tcp.set_nodelay(true);
            // Durable record before any byte reaches the host.
            let open = self.event(&request_id, &target, "pass_through", json!({ "mode": "pass_through" }));
            if self.audit.record(open).await.is_err() {
                return answer(&request_id, RefusalCode::AuditUnavailable, "the tunnel was not opened because it could not be audited");
            }
            let this = self.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut agent = Counted { inner: None, read: 0, written: 0 };
                let outcome = match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        agent.inner = Some(TokioIo::new(upgraded));
                        let mut tcp = tcp;
                        // Counts survive an abrupt close (a reset is the usual end of a TLS tunnel).
                        match tokio::io::copy_bidirectional(&mut agent, &mut tcp).await {
                            Ok(_) => "ok",
                            Err(_) => "closed_abruptly",
                        }
                    }
                    Err(_) => "incomplete",
                };
                let (up, down) = (agent.read, agent.written);
                let mut ev = this.event(
                    &crate::audit::new_id(),
                    &target,
                    outcome,
                    json!({
                        "mode": "pass_through",
                        "request_id": request_id,
                        "bytes_up": up,
                        "bytes_down": down,
                        "duration_us": crate::pipeline::duration_us(started),
                    }),
                );
                ev.action = "gateway.tunnel_closed".into();
                this.audit.record_later(ev);
            });
            return tunnel_ok();
        }

        let port_hint = if self.hosts.keys().any(|(h, _)| *h == host) { " (that host is configured, but on another port)" } else { "" };
        self.connect_event(&request_id, &target, "denied", json!({ "code": "unknown_host" }));
        answer(
            &request_id,
            RefusalCode::UnknownHost,
            &format!(
                "{target} is not a configured upstream{port_hint} and not listed in [gateway] pass_through; add an [[upstream]] for it or ask an operator to pass it through"
            ),
        )
    }

    /// The cached leaf for `host`, minting a new one when missing or near expiry.
    fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        let mut cache = self.leaves.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((leaf, minted)) = cache.get(host)
            && minted.elapsed() + LEAF_REFRESH_MARGIN < LEAF_LIFETIME
        {
            return Ok(leaf.clone());
        }
        let leaf = self.ca.mint_leaf(host, LEAF_LIFETIME)?;
        cache.insert(host.to_owned(), (leaf.clone(), Instant::now()));
        Ok(leaf)
    }

    /// Terminate TLS on the tunnel (SNI must name `host`) and serve HTTP/1.1 into the pipeline.
    async fn terminate<S>(self: Arc<Self>, io: S, host: String, port: u16, leaf: Arc<CertifiedKey>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let guard = Arc::new(SniGuard { host: host.clone(), leaf, seen: Mutex::new(None) });
        let Ok(builder) = rustls::ServerConfig::builder_with_provider(self.provider.clone()).with_safe_default_protocol_versions() else {
            return;
        };
        let mut cfg = builder.with_no_client_auth().with_cert_resolver(guard.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
            Ok(Ok(tls)) => tls,
            other => {
                let mismatch = guard.seen.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(sni) = mismatch {
                    let id = crate::audit::new_id();
                    tracing::warn!(connect = %target, sni = %crate::forward::printable(&sni), "TLS SNI differs from the CONNECT host; tunnel refused");
                    self.connect_event(&id, &target, "denied", json!({ "code": "sni_mismatch", "sni": printable(&sni) }));
                } else if let Ok(Err(e)) = other {
                    tracing::debug!(connect = %target, error = %e, "TLS handshake in tunnel failed");
                }
                return;
            }
        };
        let this = self.clone();
        let svc = service_fn(move |req| {
            let this = this.clone();
            let host = host.clone();
            async move { Ok::<_, Infallible>(this.tunnel_request(req, &host, port).await) }
        });
        let _ = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    }

    /// One decrypted request: route by (host, port, path, task environment), then the pipeline.
    pub async fn tunnel_request<B>(&self, req: Request<B>, host: &str, port: u16) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let (mut parts, body) = req.into_parts();
        match self.route(&parts, host, port, &target) {
            Ok(origin) => {
                parts.uri = origin;
                self.gateway.handle(Request::from_parts(parts, body)).await
            }
            Err((code, msg)) => {
                let id = crate::audit::new_id();
                let mut ev = self.event(
                    &id,
                    &target,
                    "denied",
                    json!({
                        "code": code.as_str(),
                        "reason": msg,
                        "method": parts.method.as_str(),
                        "path": parts.uri.path().chars().take(512).collect::<String>(),
                        "mode": "forward",
                    }),
                );
                ev.action = "gateway.request".into();
                self.audit.record_later(ev);
                answer(&id, code, &msg)
            }
        }
    }

    /// The origin-form target the reverse proxy would have received for this request.
    fn route(&self, parts: &http::request::Parts, host: &str, port: u16, target: &str) -> Result<http::Uri, (RefusalCode, String)> {
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() || !parts.uri.path().starts_with('/') {
            return Err((RefusalCode::AbsoluteUri, "inside a tunnel only origin-form request targets (/path) are accepted".into()));
        }
        if let Some(h) = parts.headers.get(header::HOST) {
            let ok = h.to_str().ok().and_then(|h| host_matches(h, host, port)).unwrap_or(false);
            if !ok {
                return Err((
                    RefusalCode::HostMismatch,
                    format!("the Host header does not name the CONNECT target {target}; the host is fixed when the tunnel opens"),
                ));
            }
        }
        let Some(on_host) = self.hosts.get(&(host.to_owned(), port)) else {
            return Err((RefusalCode::UnknownHost, format!("{target} is not a configured upstream")));
        };
        let path = parts.uri.path();
        // The longest base path that prefixes the path at a segment boundary.
        let fits = |u: &&HostUpstream| path.strip_prefix(u.base_path.as_str()).is_some_and(|r| r.is_empty() || r.starts_with('/'));
        let best = on_host.iter().filter(fits).map(|u| u.base_path.len()).max();
        let Some(best) = best else {
            return Err((RefusalCode::UnknownUpstream, format!("no upstream on {target} serves this path")));
        };
        let candidates: Vec<&HostUpstream> = on_host.iter().filter(fits).filter(|u| u.base_path.len() == best).collect();
        let chosen = if candidates.len() == 1 { candidates[0] } else { self.by_environment(&parts.headers, parts.uri.query(), &candidates, target)? };
        let rest = &path[chosen.base_path.len()..];
        let mut origin = String::with_capacity(1 + chosen.name.len() + rest.len() + parts.uri.query().map_or(0, |q| q.len() + 1));
        origin.push('/');
        origin.push_str(&chosen.name);
        origin.push_str(rest);
        if let Some(q) = parts.uri.query() {
            origin.push('?');
            origin.push_str(q);
        }
        origin.parse().map_err(|_| (RefusalCode::BadRequest, "the request path cannot be routed".to_owned()))
    }

    /// Several upstreams share this host and path: pick the one serving the task's environment.
    ///
    /// Without a verifiable token the first candidate is used and the pipeline refuses the
    /// request with its usual `missing_token` / `token_invalid` answer.
    fn by_environment<'a>(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        candidates: &[&'a HostUpstream],
        target: &str,
    ) -> Result<&'a HostUpstream, (RefusalCode, String)> {
        let injections: Vec<&Injection> = candidates.iter().map(|c| &c.injection).collect();
        let Some(task) = crate::token_place::find_token(headers, query, &injections).and_then(|t| self.verifier.verify(&t).ok()) else {
            return Ok(candidates[0]);
        };
        if let Some(u) = candidates.iter().find(|u| u.environment == task.environment) {
            return Ok(u);
        }
        let served: Vec<String> = candidates.iter().map(|u| format!("{} ({})", u.name, u.environment.as_str())).collect();
        Err((
            RefusalCode::CrossEnvironment,
            format!("task is bound to environment {:?} but {target} is served here only by {}", task.environment.as_str(), served.join(", ")),
        ))
    }

    fn event(&self, id: &str, target: &str, outcome: &str, detail: serde_json::Value) -> AuditEvent {
        AuditEvent {
            id: id.to_owned(),
            ts_ms: unix_ms(),
            actor: "unauthenticated".into(),
            action: "gateway.connect".into(),
            subject: target.chars().take(300).collect(),
            outcome: outcome.to_owned(),
            task_id: None,
            detail,
        }
    }

    fn connect_event(&self, id: &str, target: &str, outcome: &str, detail: serde_json::Value) {
        self.audit.record_later(self.event(id, target, outcome, detail));
    }
}

/// The agent's side of a pass-through tunnel, counting bytes in each direction.
struct Counted<S> {
    inner: Option<S>,
    read: u64,
    written: u64,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(Ok(())) };
        let r = Pin::new(inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(Ok(0)) };
        let r = Pin::new(inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = &r {
            self.written += *n as u64;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(i) => Pin::new(i).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(i) => Pin::new(i).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Presents the leaf only when the ClientHello's SNI names the `CONNECT` host (or is
/// absent for an IP target); otherwise records the SNI and fails the handshake.
#[derive(Debug)]
struct SniGuard {
    host: String,
    leaf: Arc<CertifiedKey>,
    seen: Mutex<Option<String>>,
}

impl ResolvesServerCert for SniGuard {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let is_ip = self.host.parse::<std::net::IpAddr>().is_ok();
        let ok = match hello.server_name() {
            Some(sni) => !is_ip && sni.trim_end_matches('.').eq_ignore_ascii_case(&self.host),
            None => is_ip,
        };
        if ok {
            return Some(self.leaf.clone());
        }
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(hello.server_name().unwrap_or("<none>").to_owned());
        None
    }
}

/// Whether a `Host` header value names `host:port` (the port may be omitted when it is 443).
fn host_matches(value: &str, host: &str, port: u16) -> Option<bool> {
    let (h, p) = match crate::config::parse_host_port(value) {
        Some(hp) => hp,
        None => {
            let a: http::uri::Authority = value.parse().ok()?;
            if a.port().is_some() {
                return Some(false);
            }
            (a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(), 443)
        }
    };
    Some(h == host && p == port)
}

/// `s` with anything but printable ASCII replaced, at most 255 characters (for logs and audit).
pub(crate) fn printable(s: &str) -> String {
    s.chars().take(255).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

fn tunnel_ok() -> Response<ResBody> {
    Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed_unsync())
}

fn answer(request_id: &str, code: RefusalCode, message: &str) -> Response<ResBody> {
    let status = code.status();
    let body = json!({ "error": code.as_str(), "message": message, "policies": [], "request_id": request_id });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    resp
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_must_name_the_connect_target() {
        assert_eq!(host_matches("api.example", "api.example", 443), Some(true));
        assert_eq!(host_matches("API.example:443", "api.example", 443), Some(true));
        assert_eq!(host_matches("api.example:8443", "api.example", 8443), Some(true));
        assert_eq!(host_matches("api.example", "api.example", 8443), Some(false));
        assert_eq!(host_matches("evil.example", "api.example", 443), Some(false));
        assert_eq!(host_matches("api.example:444", "api.example", 443), Some(false));
        assert_eq!(host_matches("[::1]:443", "::1", 443), Some(true));
        assert_eq!(host_matches("a b", "api.example", 443), None);
    }

    #[test]
    fn printable_strips_control_characters() {
        assert_eq!(printable("a\r\nb"), "a??b");
        assert_eq!(printable(&"x".repeat(400)).len(), 255);
    }
}
