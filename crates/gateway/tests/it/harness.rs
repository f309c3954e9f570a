//! Test harness: a recording TLS upstream (test CA from rcgen), the gateway in-process with
//! the real token verifier, vault, policy engine and SQLite audit store, and a raw TCP client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use airlock_gateway::Gateway;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::config::Config;
use airlock_gateway::server::{self, AdminState, Running};
use airlock_policy::PolicyEngine;
use airlock_store::{AuditEntry, AuditFilter, SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::{Grant, Name, Tier};
use airlock_vault::{MasterKey, NewSecret, SecretValue, Vault};
use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

/// The real credentials, by upstream. Tests assert these never reach the agent.
pub const SECRETS: &[(&str, &str, &str)] = &[
    // (upstream, environment, secret value)
    ("stg", "staging", "sk-live-STAGING-0123456789abcdef"),
    ("prod", "production", "sk-live-PRODUCTION-fedcba9876543210"),
    ("stgq", "staging", "qk-STAGING-query+secret/=value"),
    ("stgb", "staging", "bk-STAGING-basic-password"),
    ("crlf", "staging", "abc\r\nX-Evil: 1"),
    ("dead", "staging", "dk-STAGING-dead-upstream-key"),
    ("slow", "staging", "sl-STAGING-slow-upstream-key"),
    ("small", "staging", "sm-STAGING-small-body-key"),
];

/// The secret value for `upstream`.
pub fn secret(upstream: &str) -> &'static str {
    SECRETS.iter().find(|s| s.0 == upstream).map(|s| s.2).expect("known upstream")
}

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body_len: usize,
    /// Whether the gateway's audit record for this request was committed when it arrived.
    pub audited_before: bool,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    /// Everything the upstream saw, as one byte string (for "never contains" checks).
    pub fn everything(&self) -> Vec<u8> {
        let mut v = format!("{} {}\n", self.method, self.uri).into_bytes();
        for (n, val) in &self.headers {
            v.extend_from_slice(n.as_bytes());
            v.extend_from_slice(b": ");
            v.extend_from_slice(val);
            v.push(b'\n');
        }
        v
    }
}

/// A body that yields the given chunks one frame each.
pub struct Chunks(pub VecDeque<Bytes>);
impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub records: Arc<Mutex<Vec<Recorded>>>,
}

/// Start the recording TLS upstream on 127.0.0.1 with a fresh test CA.
pub async fn start_upstream(store: Arc<dyn Store>) -> Upstream {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "airlock test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf_params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()))
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let records: Arc<Mutex<Vec<Recorded>>> = Arc::default();
    let recs = records.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let recs = recs.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let recs = recs.clone();
                    let store = store.clone();
                    async move { Ok::<_, std::convert::Infallible>(upstream_answer(req, recs, store).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    });
    Upstream { addr, ca_pem: ca.pem(), records }
}

type UpBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

async fn upstream_answer(req: hyper::Request<hyper::body::Incoming>, recs: Arc<Mutex<Vec<Recorded>>>, store: Arc<dyn Store>) -> hyper::Response<UpBody> {
    let (parts, mut body) = req.into_parts();
    // Was the audit record committed before we (the upstream) saw the request?
    let mut audited_before = false;
    if let Some(id) = parts.headers.get("x-airlock-request-id").and_then(|v| v.to_str().ok()) {
        let all = store.list_audit(&AuditFilter::default()).await.unwrap();
        audited_before = all.iter().any(|e| e.event.id == id && e.event.outcome == "allowed");
    }
    let mut body_len = 0;
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => body_len += f.data_ref().map(|d| d.len()).unwrap_or(0),
            Err(_) => break,
        }
    }
    let path = parts.uri.path().to_owned();
    let auth = parts.headers.get("authorization").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let key = parts.headers.get("x-api-key").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    let query = parts.uri.query().unwrap_or("").to_owned();
    recs.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.iter().map(|(n, v)| (n.to_string(), v.as_bytes().to_vec())).collect(),
        body_len,
        audited_before,
    });
    let full = |s: &str| http_body_util::Full::new(Bytes::from(s.to_owned())).boxed_unsync();
    let mut resp = hyper::Response::new(full(&format!("{{\"ok\":true,\"received\":{body_len}}}")));
    if path.ends_with("/echo") {
        // Echo every credential we received, in headers and split across body chunks.
        let mut cred = auth.clone();
        cred.extend_from_slice(&key);
        cred.extend_from_slice(query.as_bytes());
        let mid = cred.len() / 2;
        let chunks: VecDeque<Bytes> =
            vec![Bytes::from_static(b"you sent: "), Bytes::copy_from_slice(&cred[..mid]), Bytes::copy_from_slice(&cred[mid..]), Bytes::from_static(b" (end)")]
                .into();
        resp = hyper::Response::new(Chunks(chunks).boxed_unsync());
        if let Ok(v) = hyper::header::HeaderValue::from_bytes(&auth) {
            resp.headers_mut().insert("x-echo-auth", v);
        }
    } else if path.ends_with("/echo-encoded") {
        // The bearer credential it received, in the encodings an echo can take, and in the
        // status line's reason phrase.
        use base64::Engine as _;
        let cred = auth.strip_prefix(b"Bearer ").unwrap_or(&auth).to_vec();
        let text = String::from_utf8_lossy(&cred).into_owned();
        let mut shifted = b"x".to_vec();
        shifted.extend_from_slice(&cred);
        let forms = [
            base64::engine::general_purpose::STANDARD.encode(&shifted),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{{\"key\":\"{text}\"}}")),
            percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC).to_string(),
            serde_json::to_string(&text).unwrap(),
            text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\u{:04x}", c as u32) }).collect(),
            hex::encode(&cred),
        ];
        resp = hyper::Response::new(full(&forms.join("\n")));
        if let Ok(r) = hyper::ext::ReasonPhrase::try_from(cred.clone()) {
            resp.extensions_mut().insert(r);
        }
    } else if path.ends_with("/redirect") {
        *resp.status_mut() = hyper::StatusCode::FOUND;
        resp.headers_mut().insert("location", "https://evil.example/steal".parse().unwrap());
    } else if path.ends_with("/gzip") {
        resp.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
    } else if path.ends_with("/slow-wait") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    resp
}

pub struct Harness {
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub upstream: Upstream,
    pub authority: TokenAuthority,
    pub revocations: Arc<Revocations>,
    pub store: Arc<dyn Store>,
    pub _running: Running,
    pub _dir: tempfile::TempDir,
}

pub fn config_text(port: u16, ca_path: &str) -> String {
    let up = |name: &str, env: &str, inject: &str, extra: &str| {
        format!(
            "[[upstream]]\nname = \"{name}\"\nbase_url = \"https://127.0.0.1:{port}/api\"\nenvironment = \"{env}\"\nsecret = \"{name}-key\"\ninject = {inject}\nca_file = \"{ca_path}\"\n{extra}\n[[upstream.operation]]\nmethod = \"DELETE\"\npath = \"/v1/volumes/{{id}}\"\nname = \"volumeDelete\"\ncapability = \"destroy\"\nresource = {{ path = \"id\" }}\n\n"
        )
    };
    let bearer = r#"{ header = "Authorization", format = "Bearer {secret}" }"#;
    let mut s = String::from("[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nsecret_cache_ttl = \"30s\"\n\n");
    s += &up("stg", "staging", bearer, "env_vars = { base_url = \"STG_BASE_URL\", key = \"STG_API_KEY\" }");
    s += &up("prod", "production", r#"{ header = "x-api-key" }"#, "");
    s += &up("stgq", "staging", r#"{ query = "api_key" }"#, "");
    s += &up("stgb", "staging", r#"{ basic = { username = "svc" } }"#, "");
    s += &up("crlf", "staging", bearer, "");
    s += &up("slow", "staging", bearer, "request_timeout = \"300ms\"");
    s += &up("small", "staging", bearer, "max_body = 1024");
    // A closed port: connection refused.
    s += &format!(
        "[[upstream]]\nname = \"dead\"\nbase_url = \"https://127.0.0.1:1\"\nenvironment = \"staging\"\nsecret = \"dead-key\"\ninject = {bearer}\nconnect_timeout = \"2s\"\n\n"
    );
    // The staging volume the tests delete (an unknown id would be treated as production).
    s += "[[inventory]]\nid = \"vol-1\"\nenvironment = \"staging\"\n";
    s
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with_audit_store(|store| store).await
    }

    /// [`Harness::start`], with the group-commit audit writer over `audit_store(store)`
    /// instead of the store itself (to break audit writes while the vault keeps working).
    pub async fn start_with_audit_store(audit_store: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
        let upstream = start_upstream(store.clone()).await;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &upstream.ca_pem).unwrap();
        let text = config_text(upstream.addr.port(), ca_path.to_str().unwrap());
        let config = Config::parse(&text, &dir.path().join("airlock.toml")).unwrap();

        let vault = Vault::new(store.clone(), MasterKey::generate());
        for (up, env, value) in SECRETS {
            add_secret(&vault, &format!("{up}-key"), env, up, value.as_bytes()).await;
        }
        let authority = TokenAuthority::ephemeral();
        let revocations = Revocations::new();
        let verifier = Arc::new(Verifier::new(authority.public_key(), revocations.clone(), VerifierOptions::default()));
        let policy = Arc::new(PolicyEngine::builtin().unwrap());
        let (audit, _writer) = GroupCommit::start(audit_store(store.clone()), 256);
        let stats = audit.stats();
        let gw = Gateway::new(&config, verifier, Arc::new(vault.clone()), policy, Arc::new(audit)).unwrap();
        gw.check_secrets().await.unwrap();
        let running = server::start(Arc::new(gw), config.listen, config.admin_listen, AdminState::new(&config, Some(stats))).await.unwrap();
        Harness { gateway: running.agent_addr, admin: running.admin_addr, upstream, authority, revocations, store, _running: running, _dir: dir }
    }

    /// Mint a token for a fresh task.
    pub fn token(&self, env: &str, grants: &[&str], ttl_secs: i64) -> (String, String) {
        let task_id = uuid::Uuid::now_v7().to_string();
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        let now = time_now();
        let t = self
            .authority
            .mint(&Claims { task_id: &task_id, agent: "agent-1", environment: env, grants: &grants, purpose: Some("test"), expires_at: now + ttl_secs })
            .unwrap();
        (t, task_id)
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.upstream.records.lock().unwrap().clone()
    }

    /// Audit entries, waiting (briefly) until `done` holds for them.
    pub async fn audit_until(&self, done: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
        audit_until(&*self.store, done).await
    }

    /// Send raw bytes to the gateway and read until the connection closes.
    pub async fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        raw(self.gateway, bytes).await
    }

    /// Send one request (Connection: close) and parse the answer.
    pub async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        parse(&self.raw(&request(method, target, headers, body)).await)
    }
}

/// Store `value` in `vault` as primary-tier secret `name` of environment `env`, bound to
/// upstream `upstream`.
pub async fn add_secret(vault: &Vault, name: &str, env: &str, upstream: &str, value: &[u8]) {
    let spec = NewSecret {
        name: Name::parse("secret", name).unwrap(),
        environment: env.parse().unwrap(),
        tier: Tier::Primary,
        upstream: Name::parse("upstream", upstream).unwrap(),
        description: None,
    };
    vault.add(&spec, &SecretValue::new(Zeroizing::new(value.to_vec()))).await.unwrap();
}

pub fn time_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
    for (k, v) in headers {
        r += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() {
        r += &format!("Content-Length: {}\r\n", body.len());
    }
    r += "\r\n";
    let mut b = r.into_bytes();
    b.extend_from_slice(body);
    b
}

pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

pub fn parse(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        let mut r = rest;
        while let Some(nl) = r.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&r[..nl]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&r[nl + 2..nl + 2 + n]);
            r = &r[nl + 2 + n + 2..];
        }
        out
    } else if let Some(len) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse::<usize>().ok()) {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Resp { status, headers, body, raw: raw.to_vec() }
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Poll `store`'s audit log (up to ~2 s) until `done` holds for it; returns the last read.
/// Outcome records are queued behind the response, so tests wait for them this way.
pub async fn audit_until(store: &dyn Store, done: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
    let mut all = Vec::new();
    for _ in 0..100 {
        all = store.list_audit(&AuditFilter::default()).await.unwrap();
        if done(&all) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    all
}
