//! The `anthropic` model preset end to end: a task holding `anthropic:model` calls the model
//! (a streamed SSE answer passes through incrementally, with the echoed real key redacted)
//! and nothing else; `anthropic:read` cannot call the model.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_fixture::anthropic::{Anthropic, Options, STREAMED_TEXT};
use airlock_gateway::Gateway;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::config::Config;
use airlock_gateway::server::{self, AdminState, Running};
use airlock_policy::PolicyEngine;
use airlock_store::{SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::Grant;
use airlock_vault::{MasterKey, Vault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Resp, add_secret, contains, parse, raw, request, time_now};

const REAL_KEY: &str = "sk-ant-api03-REAL-fixture-key-0123456789";

struct Models {
    gateway: SocketAddr,
    model: Anthropic,
    authority: TokenAuthority,
    _running: Running,
    _dir: tempfile::TempDir,
}

impl Models {
    async fn start(options: Options) -> Models {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
        let model = Anthropic::start(options).await.unwrap();
        let ca = dir.path().join("model-ca.pem");
        std::fs::write(&ca, &model.ca_pem).unwrap();
        // One line enables the preset; the test overrides its base URL and trusts the fixture's CA.
        let text = format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[upstream]]\npreset = \"anthropic\"\nenvironment = \"staging\"\nsecret = \"anthropic-key\"\nbase_url = \"{}\"\nca_file = \"{}\"\n",
            model.base_url(),
            ca.display()
        );
        let config = Config::parse(&text, &dir.path().join("airlock.toml")).unwrap();
        let vault = Vault::new(store.clone(), MasterKey::generate());
        add_secret(&vault, "anthropic-key", "staging", "anthropic", REAL_KEY.as_bytes()).await;
        let authority = TokenAuthority::ephemeral();
        let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
        let (audit, _writer) = GroupCommit::start(store.clone(), 64);
        let gw = Gateway::new(&config, verifier, Arc::new(vault), Arc::new(PolicyEngine::builtin().unwrap()), Arc::new(audit)).unwrap();
        gw.check_secrets().await.unwrap();
        let running = server::start(Arc::new(gw), config.listen, config.admin_listen, AdminState::new(&config, None)).await.unwrap();
        Models { gateway: running.agent_addr, model, authority, _running: running, _dir: dir }
    }

    fn token(&self, grants: &[&str]) -> String {
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        let task_id = uuid::Uuid::now_v7().to_string();
        self.authority
            .mint(&Claims { task_id: &task_id, agent: "claude", environment: "staging", grants: &grants, purpose: None, expires_at: time_now() + 600 })
            .unwrap()
    }

    /// A request as the Anthropic SDK sends it: the task token where the API key goes.
    fn request(&self, method: &str, path: &str, token: &str, body: &str) -> Vec<u8> {
        let headers = [("x-api-key", token), ("anthropic-version", "2023-06-01"), ("content-type", "application/json")];
        request(method, &format!("/anthropic{path}"), &headers, body.as_bytes())
    }

    async fn send(&self, method: &str, path: &str, token: &str, body: &str) -> Resp {
        parse(&raw(self.gateway, &self.request(method, path, token, body)).await)
    }
}

const STREAM: &str = r#"{"model":"claude-test","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_grant_streams_the_answer_redacted_and_allows_nothing_else() {
    let mut options = Options::new(REAL_KEY).echoing();
    options.chunk_delay = Duration::from_millis(120);
    let m = Models::start(options).await;
    let token = m.token(&["anthropic:model"]);

    // Read the answer as it arrives: the first event must come long before the last.
    let started = Instant::now();
    let mut s = TcpStream::connect(m.gateway).await.unwrap();
    s.write_all(&m.request("POST", "/v1/messages", &token, STREAM)).await.unwrap();
    let (mut got, mut first_event, mut buf) = (Vec::new(), None, [0u8; 4096]);
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if first_event.is_none() && contains(&got, b"message_start") {
            first_event = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let r = parse(&got);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let first = first_event.expect("message_start arrived");
    assert!(total - first >= Duration::from_millis(500), "not streamed: first event after {first:?}, end after {total:?}");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    for part in ["event: message_start", "event: content_block_delta", "event: message_stop"] {
        assert!(body.contains(part), "{part} missing: {body}");
    }
    for t in STREAMED_TEXT {
        assert!(body.contains(t), "{t:?} missing: {body}");
    }
    // The fixture echoed the key it received (the real one), split across two chunks:
    // the agent sees it masked, never in clear.
    assert!(!contains(&got, REAL_KEY.as_bytes()), "the real key reached the agent: {body}");
    assert!(body.contains(&format!("you sent {}", "*".repeat(REAL_KEY.len()))), "{body}");
    // The fixture got the real key, never the task token.
    let seen = m.model.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.iter().any(|(k, v)| k == "x-api-key" && v == REAL_KEY));
    assert!(!seen[0].headers.iter().any(|(_, v)| v.contains(&token)), "the task token reached the model API");

    // Non-streamed calls and token counting are model calls too.
    let r = m.send("POST", "/v1/messages", &token, r#"{"model":"m","max_tokens":8,"messages":[]}"#).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["content"][0]["text"], STREAMED_TEXT.concat());

    // Any other write is not "model": refused before it reaches the API. So is a read.
    for (method, path) in [("POST", "/v1/files"), ("POST", "/v1/messages/batches"), ("GET", "/v1/models")] {
        let r = m.send(method, path, &token, "{}").await;
        assert_eq!(r.status, 403, "{method} {path}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(m.model.requests().len(), 2, "refused requests reached the model API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_grant_cannot_call_the_model_and_write_can() {
    let m = Models::start(Options::new(REAL_KEY)).await;
    let read = m.token(&["anthropic:read"]);
    let r = m.send("POST", "/v1/messages", &read, STREAM).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert!(m.model.requests().is_empty());
    let r = m.send("GET", "/v1/models", &read, "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"][0]["id"], "fixture-model");
    // `write` covers model calls (they are writes under the hood).
    let write = m.token(&["anthropic:write"]);
    let r = m.send("POST", "/v1/messages", &write, STREAM).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("event: message_stop"));
}
