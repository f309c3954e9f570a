//! Forward-proxy mode end to end: real `curl` through `HTTPS_PROXY`, trusting the local
//! airlock CA, against a recording TLS upstream; and the attacks on the tunnel itself
//! (unconfigured host, wrong port, SNI ≠ CONNECT host, Host ≠ CONNECT host, plain-HTTP
//! proxying), pass-through tunnels, and two upstreams sharing one host chosen by the task
//! token's environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use airlock_gateway::Gateway;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::ca::{self, LocalCa};
use airlock_gateway::config::Config;
use airlock_gateway::forward::ForwardProxy;
use airlock_gateway::server::{self, AdminState, Running};
use airlock_policy::PolicyEngine;
use airlock_store::{AuditEntry, SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::Grant;
use airlock_vault::{MasterKey, Vault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{self, Upstream, time_now};

/// `(upstream, environment, secret value)`.
const SECRETS: &[(&str, &str, &str)] = &[
    ("gql-stg", "staging", "rw-STAGING-graphql-0123456789"),
    ("gql-prod", "production", "rw-PRODUCTION-graphql-9876543210"),
    ("api-prod", "production", "ak-PRODUCTION-api-key-abcdef"),
];

fn secret(up: &str) -> &'static str {
    SECRETS.iter().find(|s| s.0 == up).map(|s| s.2).unwrap()
}

struct Fwd {
    gateway: SocketAddr,
    upstream: Upstream,
    passthrough: Upstream,
    authority: TokenAuthority,
    store: Arc<dyn Store>,
    ca_pem: PathBuf,
    ca_bundle: PathBuf,
    _running: Running,
    _dir: tempfile::TempDir,
}

impl Fwd {
    async fn start() -> Fwd {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
        let upstream = harness::start_upstream(store.clone()).await;
        let passthrough = harness::start_upstream(store.clone()).await;
        let test_ca = dir.path().join("upstream-ca.pem");
        std::fs::write(&test_ca, &upstream.ca_pem).unwrap();
        let port = upstream.addr.port();
        let ca_file = test_ca.display();
        let bearer = r#"{ header = "Authorization", format = "Bearer {secret}" }"#;
        let text = format!(
            r#"[gateway]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
pass_through = ["127.0.0.1:{pt}"]

# One GraphQL endpoint serving two environments (the incident's platform).
[[upstream]]
name = "gql-stg"
base_url = "https://localhost:{port}/graphql"
environment = "staging"
secret = "gql-stg-key"
inject = {bearer}
ca_file = "{ca_file}"

[[upstream]]
name = "gql-prod"
base_url = "https://localhost:{port}/graphql"
environment = "production"
secret = "gql-prod-key"
inject = {bearer}
ca_file = "{ca_file}"

# A host served only by a production upstream.
[[upstream]]
name = "api-prod"
base_url = "https://127.0.0.1:{port}/api"
environment = "production"
secret = "api-prod-key"
inject = {{ header = "x-api-key" }}
ca_file = "{ca_file}"
"#,
            pt = passthrough.addr.port()
        );
        let config = Config::parse(&text, &dir.path().join("airlock.toml")).unwrap();
        let vault = Vault::new(store.clone(), MasterKey::generate());
        for (up, env, value) in SECRETS {
            harness::add_secret(&vault, &format!("{up}-key"), env, up, value.as_bytes()).await;
        }
        // The real CA path: created in a state directory, as `airlock serve` does.
        let state = airlock_state::StateDir::at(dir.path().join("state")).unwrap();
        state.create().unwrap();
        let local_ca = Arc::new(LocalCa::load_or_create(&state).unwrap());

        let authority = TokenAuthority::ephemeral();
        let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
        let policy = Arc::new(PolicyEngine::builtin().unwrap());
        let (audit, _writer) = GroupCommit::start(store.clone(), 256);
        let audit = Arc::new(audit);
        let gw = Arc::new(Gateway::new(&config, verifier.clone(), Arc::new(vault), policy, audit.clone()).unwrap());
        gw.check_secrets().await.unwrap();
        let fwd = ForwardProxy::new(&config, gw.clone(), verifier, audit, local_ca).unwrap();
        let running = server::start_with_forward(gw, Some(fwd), config.listen, config.admin_listen, AdminState::new(&config, None)).await.unwrap();
        Fwd {
            gateway: running.agent_addr,
            upstream,
            passthrough,
            authority,
            store,
            ca_pem: state.path(ca::CERT_FILE),
            ca_bundle: state.path(ca::BUNDLE_FILE),
            _running: running,
            _dir: dir,
        }
    }

    fn token(&self, env: &str, grants: &[&str]) -> String {
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        let task_id = uuid::Uuid::now_v7().to_string();
        self.authority
            .mint(&Claims { task_id: &task_id, agent: "agent-1", environment: env, grants: &grants, purpose: None, expires_at: time_now() + 600 })
            .unwrap()
    }

    /// Run curl with `HTTPS_PROXY` pointing at the gateway; returns (exit ok, status, body, stderr).
    async fn curl(&self, args: &[&str], cacert: &std::path::Path) -> (bool, u16, String, String) {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"])
            .arg(cacert)
            .args(args)
            .env("HTTPS_PROXY", format!("http://{}", self.gateway))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .output()
            .await
            .expect("curl is installed (apt-get install -y curl)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        (out.status.success(), code.trim().parse().unwrap_or(0), body.to_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    async fn audit_until(&self, done: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
        crate::harness::audit_until(&*self.store, done).await
    }

    /// Open a CONNECT tunnel by hand; returns the stream after a 200, or the refusal head+body.
    async fn connect(&self, target: &str) -> Result<TcpStream, String> {
        let mut s = TcpStream::connect(self.gateway).await.unwrap();
        s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).await.unwrap() == 0 {
                break;
            }
            head.push(b[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        if text.starts_with("HTTP/1.1 200") { Ok(s) } else { Err(text) }
    }
}

fn has(hay: &str, needle: &str) -> bool {
    hay.contains(needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy_gets_the_credential_injected() {
    let f = Fwd::start().await;
    let token = f.token("staging", &["gql-stg:read"]);
    let url = format!("https://localhost:{}/graphql?query=%7Bme%7D", f.upstream.addr.port());
    // Trust via the bundle `airlock env` points SSL_CERT_FILE / CURL_CA_BUNDLE at.
    let (ok, status, body, err) = f.curl(&["-H", &format!("Authorization: Bearer {token}"), &url], &f.ca_bundle).await;
    assert!(ok, "curl failed: {err}");
    assert_eq!(status, 200, "{body}");
    assert!(has(&body, "\"ok\":true"), "{body}");

    let recs = f.upstream.records.lock().unwrap().clone();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].uri, "/graphql?query=%7Bme%7D");
    assert_eq!(recs[0].header("authorization").unwrap(), format!("Bearer {}", secret("gql-stg")));
    assert!(!String::from_utf8_lossy(&recs[0].everything()).contains(&token), "the task token reached the upstream");
    assert!(recs[0].audited_before, "not durably audited before the upstream saw it");
    // The request is audited by the same pipeline as reverse-proxy mode.
    let audit = f.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.response")).await;
    assert!(audit.iter().any(|e| e.event.action == "gateway.request" && e.event.outcome == "allowed" && e.event.subject.starts_with("gql-stg/")));
    for e in &audit {
        let t = serde_json::to_string(&e.event).unwrap();
        assert!(!t.contains(secret("gql-stg")) && !t.contains(&token));
    }

    // The CA certificate alone also works (NODE_EXTRA_CA_CERTS-style), and keep-alive
    // requests in one tunnel all go through the pipeline.
    let (ok, status, _, err) = f.curl(&["-H", &format!("Authorization: Bearer {token}"), &url, &url], &f.ca_pem).await;
    assert!(ok && status == 200, "{err}");
    assert_eq!(f.upstream.records.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_refusals_hold_inside_the_tunnel() {
    let f = Fwd::start().await;
    let url = format!("https://localhost:{}/graphql", f.upstream.addr.port());
    // No token: refused by the pipeline, nothing forwarded.
    let (_, status, body, _) = f.curl(&[&url], &f.ca_pem).await;
    assert_eq!(status, 401, "{body}");
    assert!(has(&body, "missing_token"), "{body}");
    // Forged token.
    let (_, status, body, _) = f.curl(&["-H", "Authorization: Bearer not-a-token", &url], &f.ca_pem).await;
    assert_eq!(status, 401, "{body}");
    // Traversal out of the base path.
    let token = f.token("staging", &["gql-stg:read"]);
    let (_, status, body, _) = f.curl(&["--path-as-is", "-H", &format!("Authorization: Bearer {token}"), &format!("{url}/../admin")], &f.ca_pem).await;
    assert_eq!(status, 400, "{body}");
    // A path outside every upstream's base path on this host.
    let (_, status, body, _) =
        f.curl(&["-H", &format!("Authorization: Bearer {token}"), &format!("https://localhost:{}/admin", f.upstream.addr.port())], &f.ca_pem).await;
    assert_eq!(status, 404, "{body}");
    assert!(has(&body, "unknown_upstream"), "{body}");
    // Host header naming another host inside the tunnel.
    let (_, status, body, _) = f.curl(&["-H", "Host: evil.example", "-H", &format!("Authorization: Bearer {token}"), &url], &f.ca_pem).await;
    assert_eq!(status, 400, "{body}");
    assert!(has(&body, "host_mismatch"), "{body}");
    assert!(f.upstream.records.lock().unwrap().is_empty(), "a refused request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_upstreams_on_one_host_are_chosen_by_token_environment() {
    let f = Fwd::start().await;
    let url = format!("https://localhost:{}/graphql", f.upstream.addr.port());
    let stg = f.token("staging", &["gql-stg:read"]);
    let prod = f.token("production", &["gql-prod:read"]);
    let (ok, status, body, err) = f.curl(&["-H", &format!("Authorization: Bearer {stg}"), &url], &f.ca_pem).await;
    assert!(ok && status == 200, "{body} {err}");
    let (ok, status, body, err) = f.curl(&["-H", &format!("X-Airlock-Token: {prod}"), &url], &f.ca_pem).await;
    assert!(ok && status == 200, "{body} {err}");
    let recs = f.upstream.records.lock().unwrap().clone();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].header("authorization").unwrap(), format!("Bearer {}", secret("gql-stg")));
    assert_eq!(recs[1].header("authorization").unwrap(), format!("Bearer {}", secret("gql-prod")));
    // A development token matches neither: refused, naming both upstreams.
    let dev = f.token("development", &["gql-stg:read"]);
    let (_, status, body, _) = f.curl(&["-H", &format!("Authorization: Bearer {dev}"), &url], &f.ca_pem).await;
    assert_eq!(status, 403, "{body}");
    assert!(has(&body, "cross_environment") && has(&body, "gql-stg (staging)") && has(&body, "gql-prod (production)"), "{body}");
    assert_eq!(f.upstream.records.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_token_against_a_production_only_host_is_refused() {
    let f = Fwd::start().await;
    let stg = f.token("staging", &["api-prod:read", "gql-stg:read"]);
    let url = format!("https://127.0.0.1:{}/api/v1/volumes", f.upstream.addr.port());
    let (_, status, body, _) = f.curl(&["-H", &format!("x-api-key: {stg}"), &url], &f.ca_pem).await;
    assert_eq!(status, 403, "{body}");
    assert!(has(&body, "cross_environment") && has(&body, "staging") && has(&body, "production"), "{body}");
    assert!(f.upstream.records.lock().unwrap().is_empty());
    // The production token passes there (IP CONNECT target, no SNI), with the key injected.
    let prod = f.token("production", &["api-prod:read"]);
    let (ok, status, body, err) = f.curl(&["-H", &format!("x-api-key: {prod}"), &url], &f.ca_pem).await;
    assert!(ok && status == 200, "{body} {err}");
    assert_eq!(f.upstream.records.lock().unwrap()[0].header("x-api-key").unwrap(), secret("api-prod"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_unconfigured_host_or_port_is_refused() {
    let f = Fwd::start().await;
    let token = f.token("staging", &["gql-stg:read"]);
    let (ok, _, _, err) = f.curl(&["-H", &format!("Authorization: Bearer {token}"), "https://evil.example/graphql"], &f.ca_pem).await;
    assert!(!ok, "curl reached an unconfigured host");
    assert!(err.contains("403"), "{err}");
    // The refusal is machine-readable.
    let refused = f.connect("evil.example:443").await.unwrap_err();
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    let r = harness::parse(&harness::raw(f.gateway, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n").await);
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "unknown_host");
    // The upstream's host on another port.
    let r = harness::parse(&harness::raw(f.gateway, b"CONNECT localhost:1 HTTP/1.1\r\nHost: localhost:1\r\nConnection: close\r\n\r\n").await);
    assert_eq!((r.status, r.code().as_str()), (403, "unknown_host"));
    assert!(String::from_utf8_lossy(&r.body).contains("another port"));
    // Plain-HTTP proxying (absolute-form) stays refused.
    let abs = format!("http://localhost:{}/graphql", f.upstream.addr.port());
    let r = harness::parse(&harness::raw(f.gateway, &harness::request("GET", &abs, &[("Authorization", &format!("Bearer {token}"))], b"")).await);
    assert_eq!((r.status, r.code().as_str()), (400, "absolute_uri"));
    let audit = f.audit_until(|a| a.iter().filter(|e| e.event.action == "gateway.connect" && e.event.outcome == "denied").count() >= 3).await;
    assert!(audit.iter().any(|e| e.event.action == "gateway.connect" && e.event.subject == "evil.example:443" && e.event.detail["code"] == "unknown_host"));
    assert!(f.upstream.records.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_differing_from_connect_host_is_refused() {
    let f = Fwd::start().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(&f.ca_pem).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(cfg);
    let target = format!("localhost:{}", f.upstream.addr.port());

    // Control: the right SNI completes the handshake with a leaf for the CONNECT host.
    let tcp = f.connect(&target).await.unwrap();
    let sn = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(sn, tcp).await.expect("handshake with matching SNI");

    // Attack: CONNECT to the upstream's host, SNI naming another host.
    let tcp = f.connect(&target).await.unwrap();
    let sn = rustls::pki_types::ServerName::try_from("evil.example").unwrap();
    assert!(connector.connect(sn, tcp).await.is_err(), "TLS completed for an SNI other than the CONNECT host");
    // Even for another configured host's name.
    let tcp = f.connect(&target).await.unwrap();
    let sn = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    assert!(connector.connect(sn, tcp).await.is_err());

    let audit = f.audit_until(|a| a.iter().any(|e| e.event.detail["code"] == "sni_mismatch")).await;
    let e = audit.iter().find(|e| e.event.detail["code"] == "sni_mismatch").expect("SNI mismatch audited");
    assert_eq!(e.event.subject, target);
    assert_eq!(e.event.detail["sni"], "evil.example");
    assert!(f.upstream.records.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_host_is_tunnelled_without_injection() {
    let f = Fwd::start().await;
    let token = f.token("staging", &["gql-stg:read"]);
    // The client verifies the pass-through host's real certificate (its own CA), not airlock's.
    let url = format!("https://127.0.0.1:{}/pkg/index", f.passthrough.addr.port());
    let pt_ca = f._dir.path().join("pt-ca.pem");
    std::fs::write(&pt_ca, &f.passthrough.ca_pem).unwrap();
    let (ok, status, body, err) = f.curl(&["-H", &format!("Authorization: Bearer {token}"), &url], &pt_ca).await;
    assert!(ok && status == 200, "{body} {err}");
    let recs = f.passthrough.records.lock().unwrap().clone();
    assert_eq!(recs.len(), 1);
    // Nothing injected, nothing stripped: the host saw exactly what the client sent.
    assert_eq!(recs[0].header("authorization").unwrap(), format!("Bearer {token}"));
    assert!(recs[0].header("x-airlock-request-id").is_none());
    for (_, _, s) in SECRETS {
        assert!(!String::from_utf8_lossy(&recs[0].everything()).contains(s));
    }
    let target = format!("127.0.0.1:{}", f.passthrough.addr.port());
    let audit = f.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.tunnel_closed")).await;
    assert!(audit.iter().any(|e| e.event.action == "gateway.connect" && e.event.outcome == "pass_through" && e.event.subject == target));
    let closed = audit.iter().find(|e| e.event.action == "gateway.tunnel_closed").unwrap();
    assert_eq!(closed.event.subject, target);
    assert!(closed.event.detail["bytes_up"].as_u64().unwrap() > 0 && closed.event.detail["bytes_down"].as_u64().unwrap() > 0);
    // The terminating CA is not involved: trusting only the airlock CA fails for this host.
    let (ok, _, _, _) = f.curl(&[&url], &f.ca_pem).await;
    assert!(!ok);
}
