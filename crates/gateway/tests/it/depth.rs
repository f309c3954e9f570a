//! Gateway depth against the fixture cloud (one TLS GraphQL endpoint for every
//! environment, recording what it receives): GraphQL classification, resource
//! attribution, approvals through the admin API, raw credentials on the way out, MCP
//! tool calls and `tools/list` filtering — over raw HTTP in reverse-proxy mode, and with
//! real `curl` through `HTTPS_PROXY` trusting the airlock CA (forward-proxy mode), using
//! exactly the variables `airlock env` prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_fixture::tls::TestPki;
use airlock_fixture::{RunningFixture, World};
use airlock_gateway::Gateway;
use airlock_gateway::approvals::AdminToken;
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
use serde_json::{Value, json};

use crate::harness::{Resp, add_secret, parse, raw, request, time_now};

/// The fixture's one API token (valid on every environment, like the incident's).
const CLOUD_TOKEN: &str = "fixture-cloud-token-0123456789";
const ADMIN: &str = "admin-credential-for-tests-0123456789";

struct Depth {
    gateway: SocketAddr,
    admin: SocketAddr,
    cloud: RunningFixture,
    mcp: Mcp,
    authority: TokenAuthority,
    store: Arc<dyn Store>,
    config: Config,
    ca_pem: PathBuf,
    ca_bundle: PathBuf,
    _running: Running,
    _dir: tempfile::TempDir,
}

/// `cloud-stg` and `cloud-prod` share one host (`127.0.0.1:<port>/graphql`, chosen by the
/// task's environment in forward mode); `cloud-hold` is the same cloud as `localhost`.
/// `stg_extra` goes into the `cloud-stg` upstream (e.g. an inventory lookup).
fn config_with(port: u16, mcp_port: u16, ca: &str, stg_extra: &str) -> String {
    let up = |name: &str, env: &str, extra: &str| {
        let host = if name == "cloud-hold" { "localhost" } else { "127.0.0.1" };
        format!(
            r#"[[upstream]]
name = "{name}"
base_url = "https://{host}:{port}/graphql"
environment = "{env}"
secret = "{name}-key"
inject = {{ header = "Authorization", format = "Bearer {{secret}}" }}
ca_file = "{ca}"
protocol = "graphql"
{extra}

[[upstream.operation]]
fields = ["volumeDelete"]
capability = "destroy"
tier = "primary"
resource = {{ argument = "volumeId" }}

[[upstream.operation]]
fields = ["backupDelete"]
capability = "destroy"
tier = "backup"
resource = {{ argument = "backupId" }}

"#
        )
    };
    let mut s = String::from("[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nclassify_limit = 16384\n\n");
    s += &up("cloud-stg", "staging", stg_extra);
    s += &up("cloud-prod", "production", "approval = { mode = \"reject\", ttl = \"10m\" }");
    s += &up("cloud-hold", "production", "approval = { mode = \"hold\", hold_timeout = \"20s\" }");
    s += &format!(
        r#"[[upstream]]
name = "mcp-stg"
base_url = "https://127.0.0.1:{mcp_port}/mcp"
environment = "staging"
secret = "mcp-stg-key"
inject = {{ header = "Authorization", format = "Bearer {{secret}}" }}
ca_file = "{ca}"
protocol = "mcp"

[[upstream.operation]]
tools = ["list_volumes"]
capability = "read"

[[upstream.operation]]
tools = ["delete_volume"]
capability = "destroy"
resource = {{ pointer = "/volumeId" }}

"#
    );
    s += r#"
[[inventory]]
id = "vol-prod-db"
environment = "production"

[[inventory]]
id = "vol-staging-db"
environment = "staging"

[[inventory]]
id = "bkp-prod-db-1"
environment = "production"
tier = "backup"
"#;
    s
}

impl Depth {
    async fn start() -> Depth {
        Depth::start_with(World::standard(CLOUD_TOKEN), "", &[]).await
    }

    /// A depth setup whose cloud is `world`, with `stg_extra` in the `cloud-stg` upstream
    /// and `extra_secrets` (name, environment, upstream, value) in the vault.
    async fn start_with(world: World, stg_extra: &str, extra_secrets: &[(&str, &str, &str, &str)]) -> Depth {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
        let pki = TestPki::loopback().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cloud = airlock_fixture::serve(listener, Arc::new(world), Some(pki.server.clone()));
        let mcp = Mcp::start(pki.server.clone()).await;
        let ca_path = dir.path().join("cloud-ca.pem");
        std::fs::write(&ca_path, &pki.ca_pem).unwrap();
        let config =
            Config::parse(&config_with(cloud.addr.port(), mcp.addr.port(), ca_path.to_str().unwrap(), stg_extra), &dir.path().join("airlock.toml")).unwrap();

        let vault = Vault::new(store.clone(), MasterKey::generate());
        for (up, env) in [("cloud-stg", "staging"), ("cloud-prod", "production"), ("cloud-hold", "production"), ("mcp-stg", "staging")] {
            add_secret(&vault, &format!("{up}-key"), env, up, CLOUD_TOKEN.as_bytes()).await;
        }
        for (name, env, up, value) in extra_secrets {
            add_secret(&vault, name, env, up, value.as_bytes()).await;
        }
        // The local CA in a state directory, as `airlock serve` creates it.
        let state = airlock_state::StateDir::at(dir.path().join("state")).unwrap();
        state.create().unwrap();
        let local_ca = Arc::new(LocalCa::load_or_create(&state).unwrap());

        let authority = TokenAuthority::ephemeral();
        let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
        let policy = Arc::new(PolicyEngine::builtin().unwrap());
        let (audit, _writer) = GroupCommit::start(store.clone(), 256);
        let stats = audit.stats();
        let audit = Arc::new(audit);
        let gw = Gateway::new(&config, verifier.clone(), Arc::new(vault), policy, audit.clone()).unwrap().with_approvals(store.clone());
        gw.check_secrets().await.unwrap();
        let admin = AdminState::new(&config, Some(stats))
            .with_approvals(gw.approvals(), AdminToken::from_file_contents(format!("{ADMIN}\n").as_bytes()))
            .with_lookups(gw.inventory_lookups());
        let gw = Arc::new(gw);
        let fwd = ForwardProxy::new(&config, gw.clone(), verifier, audit, local_ca).unwrap();
        let running = server::start_with_forward(gw, Some(fwd), config.listen, config.admin_listen, admin).await.unwrap();
        Depth {
            gateway: running.agent_addr,
            admin: running.admin_addr,
            cloud,
            mcp,
            authority,
            store,
            config,
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
            .mint(&Claims { task_id: &task_id, agent: "agent-1", environment: env, grants: &grants, purpose: Some("test"), expires_at: time_now() + 600 })
            .unwrap()
    }

    /// POST a GraphQL body through the gateway with a task token.
    async fn gql(&self, upstream: &str, token: &str, body: &Value) -> Resp {
        self.post(upstream, &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], body.to_string().as_bytes()).await
    }

    async fn post(&self, upstream: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        parse(&raw(self.gateway, &request("POST", &format!("/{upstream}/graphql"), headers, body)).await)
    }

    /// Call the admin API.
    async fn admin(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> Resp {
        let mut headers = vec![("Content-Type", "application/json")];
        let auth;
        if let Some(b) = bearer {
            auth = format!("Bearer {b}");
            headers.push(("Authorization", &auth));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        parse(&raw(self.admin, &request(method, path, &headers, body.as_bytes())).await)
    }

    fn forwarded(&self) -> usize {
        self.cloud.world.requests().len()
    }

    async fn audit_until(&self, done: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
        crate::harness::audit_until(&*self.store, done).await
    }
}

fn delete(id: &str) -> Value {
    json!({ "query": format!("mutation {{ volumeDelete(volumeId: \"{id}\") }}") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_queries_pass_with_the_real_credential() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:read"]);
    let r = d
        .gql("cloud-stg", &t, &json!({ "query": "query V($e: String) { volumes(environment: $e) { id } me { name } }", "variables": { "e": "staging" } }))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["volumes"][0]["id"], "vol-staging-db");
    let seen = d.cloud.world.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {CLOUD_TOKEN}")));
    assert!(!seen[0].headers.iter().any(|(_, v)| v.contains(&t)), "the task token reached the cloud");
    // A batch of reads is a read.
    let r = d.gql("cloud-stg", &t, &json!([{ "query": "{ me { name } }" }, { "query": "{ backups { id } }" }])).await;
    assert_eq!(r.status, 200);
    // A destroy on a staging volume by a staging task that may destroy passes.
    let t = d.token("staging", &["cloud-stg:destroy"]);
    let r = d.gql("cloud-stg", &t, &delete("vol-staging-db")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(d.cloud.world.destroyed(), ["vol-staging-db"]);
    let audit = d.audit_until(|a| a.iter().any(|e| e.event.detail["operation"] == "volumeDelete")).await;
    let rec = audit.iter().find(|e| e.event.action == "gateway.request" && e.event.detail["operation"] == "volumeDelete").unwrap();
    assert_eq!(rec.event.detail["resource"], "vol-staging-db");
    assert_eq!(rec.event.detail["resource_environment"], "staging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_fields_hidden_anywhere_are_found() {
    let d = Depth::start().await;
    let reader = d.token("staging", &["cloud-stg:read"]);
    let destroyer = d.token("staging", &["cloud-stg:destroy"]);
    let hidden = |id: &str| {
        vec![
            ("alias", json!({ "query": format!("mutation {{ listVolumes: volumeDelete(volumeId: \"{id}\") }}") })),
            ("fragment", json!({ "query": format!("mutation {{ ...F }} fragment F on Mutation {{ volumeDelete(volumeId: \"{id}\") }}") })),
            ("inline fragment", json!({ "query": format!("mutation {{ ... on Mutation {{ volumeDelete(volumeId: \"{id}\") }} }}") })),
            ("batch", json!([{ "query": "{ me { name } }" }, { "query": format!("mutation {{ volumeDelete(volumeId: \"{id}\") }}") }])),
            (
                "second operation",
                json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "B" }),
            ),
            (
                "harmless operationName",
                json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "A" }),
            ),
            ("variable", json!({ "query": "mutation D($v: ID!) { x: volumeDelete(volumeId: $v) }", "variables": { "v": id } })),
        ]
    };
    // A read-only task: every hiding place is still a destroy it was not granted.
    for (how, body) in hidden("vol-staging-db") {
        let r = d.gql("cloud-stg", &reader, &body).await;
        assert_eq!((r.status, r.code().as_str()), (403, "not_granted"), "{how}");
    }
    // A staging task that may destroy: the hidden target is a production volume.
    for (how, body) in hidden("vol-prod-db") {
        let r = d.gql("cloud-stg", &destroyer, &body).await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "{how}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(d.forwarded(), 0, "the cloud saw {:?}", d.cloud.world.requests());
    assert!(d.cloud.world.destroyed().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_production_ids_and_unattributable_destroys() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:destroy"]);
    // A production volume id through a staging task.
    let r = d.gql("cloud-stg", &t, &delete("vol-prod-db")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Unattributable destroys are production: an unknown id, a missing variable, a persisted query.
    for body in [
        delete("vol-somewhere"),
        json!({ "query": "mutation($id: ID!) { volumeDelete(volumeId: $id) }" }),
        json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38" } } }),
    ] {
        let r = d.gql("cloud-stg", &t, &body).await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "{body}");
    }
    // One staging and one production id in the same request: the production one decides.
    let r = d
        .gql("cloud-stg", &t, &json!({ "query": "mutation { a: volumeDelete(volumeId: \"vol-staging-db\") b: volumeDelete(volumeId: \"vol-prod-db\") }" }))
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Bodies that cannot be classified are refused.
    for body in
        [&b"{not json"[..], br#"{"query":"mutation { volumeDelete("}"#, br#"{"query":"{me}","query":"mutation{volumeDelete(volumeId:\"vol-staging-db\")}"}"#]
    {
        let r = d.post("cloud-stg", &[("Authorization", &format!("Bearer {t}"))], body).await;
        assert_eq!((r.status, r.code().as_str()), (400, "unparsable_request"), "{}", String::from_utf8_lossy(body));
    }
    // Over the classification cap.
    let big = json!({ "query": format!("{{ me {{ name }} }} # {}", "x".repeat(20_000)) });
    let r = d.gql("cloud-stg", &t, &big).await;
    assert_eq!((r.status, r.code().as_str()), (413, "classify_limit"));
    assert_eq!(d.forwarded(), 0);
    let audit = d.audit_until(|a| a.iter().filter(|e| e.event.outcome == "denied").count() >= 9).await;
    assert!(audit.iter().any(|e| e.event.detail["code"] == "unparsable_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_reject_mode_passes_exactly_once() {
    let d = Depth::start().await;
    let t = d.token("production", &["cloud-prod:destroy"]);
    let r = d.gql("cloud-prod", &t, &delete("vol-prod-db")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"), "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    // Asking again reuses the pending request.
    let r = d.gql("cloud-prod", &t, &delete("vol-prod-db")).await;
    assert_eq!(r.json()["approval_id"], id.as_str());
    assert_eq!(d.forwarded(), 0);

    let list = d.admin("GET", "/v1/approvals?status=pending", Some(ADMIN), None).await;
    assert_eq!(list.status, 200);
    let items = list.json();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(
        (items[0]["operation"].as_str(), items[0]["resource"].as_str(), items[0]["environment"].as_str()),
        (Some("volumeDelete"), Some("vol-prod-db"), Some("production"))
    );

    let r = d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(ADMIN), Some(json!({ "note": "restore drill" }))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "approved");
    // Deciding twice conflicts; unknown ids are 404.
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{id}/deny"), Some(ADMIN), Some(json!({ "reason": "x" }))).await.status, 409);
    assert_eq!(d.admin("POST", "/v1/approvals/nope/approve", Some(ADMIN), None).await.code(), "approval_not_found");

    // A different request does not ride on the approval.
    let r =
        d.gql("cloud-prod", &t, &json!({ "query": "mutation { volumeDelete(volumeId: \"vol-prod-db\") backupDelete(backupId: \"bkp-prod-db-1\") }" })).await;
    assert_eq!(r.status, 403);
    assert_eq!(d.forwarded(), 0);
    // An approval request for a batch shows the approver every operation it would release.
    let t2 = d.token("production", &["cloud-prod:destroy"]);
    let batch = json!({ "query": "mutation { a: volumeDelete(volumeId: \"vol-prod-db\") b: volumeDelete(volumeId: \"vol-prod-logs\") }" });
    let r = d.gql("cloud-prod", &t2, &batch).await;
    assert_eq!(r.code(), "approval_required", "{}", String::from_utf8_lossy(&r.body));
    let bid = r.json()["approval_id"].as_str().unwrap().to_owned();
    let list = d.admin("GET", "/v1/approvals?status=pending", Some(ADMIN), None).await.json();
    let rec = list.as_array().unwrap().iter().find(|x| x["id"] == bid.as_str()).unwrap().clone();
    assert_eq!(rec["operation"], "volumeDelete + volumeDelete", "{rec}");
    assert_eq!(rec["resource"], "vol-prod-db, vol-prod-logs", "{rec}");
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{bid}/deny"), Some(ADMIN), Some(json!({ "reason": "test" }))).await.status, 200);
    // The same request passes once...
    let r = d.gql("cloud-prod", &t, &delete("vol-prod-db")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(d.cloud.world.destroyed(), ["vol-prod-db"]);
    // ...and a replay is refused (a fresh approval request, nothing forwarded).
    let r = d.gql("cloud-prod", &t, &delete("vol-prod-db")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"));
    assert_ne!(r.json()["approval_id"], id.as_str());
    assert_eq!(d.forwarded(), 1);

    let audit = d.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.request" && e.event.detail["approval_id"] == id.as_str())).await;
    assert!(audit.iter().any(|e| e.event.action == "gateway.approval_requested" && e.event.detail["approval_id"] == id.as_str()));
    assert!(
        audit
            .iter()
            .any(|e| e.event.action == "approval.approved" && e.event.subject == id && e.event.actor == "admin" && e.event.detail["note"] == "restore drill")
    );
    let used = audit.iter().find(|e| e.event.action == "gateway.request" && e.event.outcome == "allowed" && e.event.detail["approval_id"] == id.as_str());
    assert!(used.is_some(), "no forwarded request carries approval {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_need_the_admin_credential_on_the_admin_port() {
    let d = Depth::start().await;
    let t = d.token("production", &["cloud-prod:destroy"]);
    let r = d.gql("cloud-prod", &t, &delete("vol-prod-db")).await;
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/approvals/{id}/approve");

    let r = d.admin("POST", &path, Some(&t), None).await;
    assert_eq!((r.status, r.code().as_str()), (403, "task_token_cannot_approve"));
    let r = d.admin("POST", &path, None, None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "admin_auth_required"));
    let r = d.admin("POST", &path, Some("admin-credential-for-tests-012345678"), None).await;
    assert_eq!((r.status, r.code().as_str()), (401, "admin_auth_required"));
    assert_eq!(d.admin("GET", "/v1/approvals", Some(&t), None).await.status, 403);
    assert!(!String::from_utf8_lossy(&r.raw).contains(ADMIN));

    // The agent-facing port has no approval route, with any credential.
    for bearer in [t.as_str(), ADMIN] {
        let auth = format!("Bearer {bearer}");
        let r = parse(&raw(d.gateway, &request("POST", &path, &[("Authorization", &auth)], b"{}")).await);
        assert_eq!((r.status, r.code().as_str()), (404, "unknown_upstream"));
    }
    let list = d.admin("GET", "/v1/approvals", Some(ADMIN), None).await.json();
    assert_eq!(list[0]["status"], "pending");
    assert_eq!(d.forwarded(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_mode_completes_within_a_second_of_approval() {
    let d = Arc::new(Depth::start().await);
    let t = d.token("production", &["cloud-hold:destroy"]);
    let (d2, t2) = (d.clone(), t.clone());
    let held = tokio::spawn(async move { d2.gql("cloud-hold", &t2, &delete("vol-prod-db")).await });
    let id = wait_for_pending(&d).await;
    assert_eq!(d.forwarded(), 0, "a held request reached the cloud before approval");
    let approved_at = Instant::now();
    let r = d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(ADMIN), Some(json!({}))).await;
    assert_eq!(r.status, 200);
    let r = held.await.unwrap();
    let took = approved_at.elapsed();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(took < Duration::from_secs(1), "hold completed {took:?} after approval");
    assert_eq!(d.cloud.world.destroyed(), ["vol-prod-db"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_mode_deny_carries_the_reason() {
    let d = Arc::new(Depth::start().await);
    let t = d.token("production", &["cloud-hold:destroy"]);
    let (d2, t2) = (d.clone(), t.clone());
    let held = tokio::spawn(async move { d2.gql("cloud-hold", &t2, &delete("vol-prod-db")).await });
    let id = wait_for_pending(&d).await;
    let r = d.admin("POST", &format!("/v1/approvals/{id}/deny"), Some(ADMIN), Some(json!({}))).await;
    assert_eq!((r.status, r.code().as_str()), (400, "reason_required"));
    let r = d.admin("POST", &format!("/v1/approvals/{id}/deny"), Some(ADMIN), Some(json!({ "reason": "production data, not during the freeze" }))).await;
    assert_eq!(r.status, 200);
    let r = held.await.unwrap();
    assert_eq!((r.status, r.code().as_str()), (403, "approval_denied"));
    assert!(r.json()["message"].as_str().unwrap().contains("not during the freeze"));
    assert_eq!(r.json()["approval_id"], id.as_str());
    assert_eq!(d.forwarded(), 0);
    let audit = d.audit_until(|a| a.iter().any(|e| e.event.action == "approval.denied")).await;
    assert!(audit.iter().any(|e| e.event.action == "approval.denied" && e.event.detail["note"] == "production data, not during the freeze"));
}

async fn wait_for_pending(d: &Depth) -> String {
    for _ in 0..200 {
        let list = d.admin("GET", "/v1/approvals?status=pending", Some(ADMIN), None).await.json();
        if let Some(id) = list.get(0).and_then(|a| a["id"].as_str()) {
            return id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no pending approval appeared");
}

/// A checksum-valid classic GitHub token (synthetic; the scanner's own rule example), found
/// by the scanner's engine.
const GITHUB_TOKEN: &str = "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";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_credentials_never_leave() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:read"]);
    let auth = format!("Bearer {t}");
    let query = json!({ "query": "{ me { name } }" }).to_string();
    for (name, value, kind) in [
        // The scanner's engine: a real-format, checksum-valid token.
        ("X-GitHub-Token", GITHUB_TOKEN, "github-pat-classic"),
        // The strict built-in formats: GitHub token shapes the scanner would not confirm,
        // and the AWS key id the scanner rates medium (and knows as the docs example).
        ("X-Backup-Auth", "token github_pat_11AAAAAAA0abcdefghijklmnopqrstuvwxyz0123456789", "github_token"),
        ("X-Old-Token", "ghp_R4nd0mL00k1ngT0k3nF0undInW0rkspac3xy", "github_token"),
        ("X-Aws-Key", "AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
    ] {
        let r = d.post("cloud-stg", &[("Authorization", &auth), ("Content-Type", "application/json"), (name, value)], query.as_bytes()).await;
        assert_eq!((r.status, r.code().as_str()), (403, "raw_credential"), "{name}");
        assert!(r.json()["message"].as_str().unwrap().contains(kind), "{name}: {}", r.json()["message"]);
        assert!(!String::from_utf8_lossy(&r.raw).contains(value), "the answer echoed the credential");
    }
    // In the body (GraphQL variables), too, and the inline-allow marker does not silence it.
    let body = json!({ "query": "query($k: String) { me { name } }", "variables": { "k": "ASIAIOSFODNN7EXAMPLE" } });
    assert_eq!(d.gql("cloud-stg", &t, &body).await.code(), "raw_credential");
    let body = json!({ "query": "query($k: String) { me { name } }", "variables": { "k": GITHUB_TOKEN, "note": "airlock:allow" } });
    assert_eq!(d.gql("cloud-stg", &t, &body).await.code(), "raw_credential");
    // Hidden in HTTP basic credentials.
    let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("x-access-token:{GITHUB_TOKEN}"));
    let r = d.post("cloud-stg", &[("X-Airlock-Token", &t), ("Proxy-Authorization", &format!("Basic {basic}"))], query.as_bytes()).await;
    assert_eq!(r.code(), "raw_credential");
    assert_eq!(d.forwarded(), 0);
    // The task token itself is not a raw credential, nor is an ordinary body with a password field.
    assert_eq!(d.gql("cloud-stg", &t, &json!({ "query": "{ me { name } }" })).await.status, 200);
    let ordinary = json!({ "query": "query($p: String) { me { name } }", "variables": { "p": "Tr0ub4dor&3-correct-horse", "id": "8f14e45f-ceea-467f-a0e6-1b2c3d4e5f60" } });
    assert_eq!(d.gql("cloud-stg", &t, &ordinary).await.status, 200);
    let audit = d.audit_until(|a| a.iter().filter(|e| e.event.action == "gateway.alert").count() >= 7).await;
    let alerts: Vec<_> = audit.iter().filter(|e| e.event.action == "gateway.alert").collect();
    assert_eq!(alerts.len(), 7);
    assert_eq!(alerts[0].event.detail["location"], "header:x-github-token");
    assert_eq!(alerts[0].event.detail["kind"], "github-pat-classic");
    assert_eq!(alerts[3].event.detail["kind"], "aws_access_key_id");
    assert_eq!(alerts[4].event.detail["location"], "body");
    let all = serde_json::to_string(&audit.iter().map(|e| &e.event.detail).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("AKIAIOSFODNN7EXAMPLE") && !all.contains("ghp_R4nd0m") && !all.contains(GITHUB_TOKEN), "a credential reached the audit log");
}

// ---------------------------------------------------------------------------------------
// Forward-proxy mode: real curl through HTTPS_PROXY, with the variables `airlock env` prints.

/// What curl reported: exit success, the final status, the CONNECT status, the body.
#[derive(Debug)]
struct Curl {
    ok: bool,
    status: u16,
    connect: u16,
    body: String,
    /// Shown in failure messages (through `Debug`).
    #[allow(dead_code)]
    stderr: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
    fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
}

impl Depth {
    /// The environment `airlock env` gives an agent in forward-proxy mode (the proxy URL
    /// pointed at this test's gateway port), and nothing else but `PATH`.
    fn proxy_env(&self) -> Vec<(String, String)> {
        let mut c = self.config.clone();
        c.public_url = format!("http://{}", self.gateway);
        let env = airlock_gateway::env::proxy_exports(&c, &self.ca_pem, &self.ca_bundle);
        assert!(env.iter().any(|(k, v)| k == "CURL_CA_BUNDLE" && v.ends_with("ca-bundle.pem")));
        env
    }

    /// POST `body` to `url` with curl through `HTTPS_PROXY`, the task token as a bearer.
    async fn curl(&self, url: &str, token: &str, body: &str, headers: &[&str]) -> Curl {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).envs(self.proxy_env());
        cmd.args(["-q", "-sS", "--max-time", "15", "-X", "POST", "-w", "\n%{http_code} %{http_connect}"])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(["-H", "Content-Type: application/json"]);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg("--data-binary").arg(body).arg(url).output().await.expect("curl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, codes) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let mut codes = codes.split(' ').map(|c| c.trim().parse::<u16>().unwrap_or(0));
        Curl {
            ok: out.status.success(),
            status: codes.next().unwrap_or(0),
            connect: codes.next().unwrap_or(0),
            body: body.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn cloud_url(&self, host: &str) -> String {
        format!("https://{host}:{}/graphql", self.cloud.addr.port())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy_reads_pass_and_hidden_destroys_fail() {
    let d = Depth::start().await;
    let url = d.cloud_url("127.0.0.1");
    let reader = d.token("staging", &["cloud-stg:read"]);

    // An allowed query: the cloud gets the real credential, never the task token.
    let q = json!({ "query": "query V($e: String) { volumes(environment: $e) { id } }", "variables": { "e": "staging" } }).to_string();
    let r = d.curl(&url, &reader, &q, &[]).await;
    assert!(r.ok && r.connect == 200 && r.status == 200, "{r:?}");
    assert_eq!(r.json()["data"]["volumes"][0]["id"], "vol-staging-db");
    let seen = d.cloud.world.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {CLOUD_TOKEN}")));
    assert!(!seen[0].headers.iter().any(|(_, v)| v.contains(&reader)), "the task token reached the cloud");
    assert!(!r.body.contains(CLOUD_TOKEN));

    // Every hiding place of a destructive field, for a task that may only read.
    let id = "vol-staging-db";
    let hidden = [
        ("alias", json!({ "query": format!("mutation {{ listVolumes: volumeDelete(volumeId: \"{id}\") }}") })),
        ("fragment", json!({ "query": format!("mutation {{ ...F }} fragment F on Mutation {{ volumeDelete(volumeId: \"{id}\") }}") })),
        ("batch", json!([{ "query": "{ me { name } }" }, { "query": format!("mutation {{ volumeDelete(volumeId: \"{id}\") }}") }])),
        (
            "second operation",
            json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "B" }),
        ),
        (
            "harmless operationName",
            json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "A" }),
        ),
    ];
    for (how, body) in &hidden {
        let r = d.curl(&url, &reader, &body.to_string(), &[]).await;
        assert_eq!((r.status, r.code().as_str()), (403, "not_granted"), "{how}: {r:?}");
    }
    // A production volume id sent through a staging task that may destroy.
    let destroyer = d.token("staging", &["cloud-stg:destroy"]);
    let r = d.curl(&url, &destroyer, &delete("vol-prod-db").to_string(), &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "{r:?}");
    // A raw GitHub credential and a raw AWS key id in a header.
    for h in [format!("X-GitHub-Token: {GITHUB_TOKEN}"), "X-Aws-Key: AKIAIOSFODNN7EXAMPLE".to_owned()] {
        let r = d.curl(&url, &reader, &q, &[&h]).await;
        assert_eq!((r.status, r.code().as_str()), (403, "raw_credential"), "{h}: {r:?}");
    }
    assert_eq!(d.forwarded(), 1, "a refused request reached the cloud: {:?}", d.cloud.world.requests());
    assert!(d.cloud.world.destroyed().is_empty());

    // CONNECT to a host with no upstream (and not passed through): refused, curl fails.
    let r = d.curl("https://unconfigured.invalid/graphql", &reader, &q, &[]).await;
    assert!(!r.ok && r.connect == 403, "{r:?}");
    let audit = d.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.connect" && e.event.outcome == "denied")).await;
    assert!(
        audit.iter().any(|e| e.event.action == "gateway.connect" && e.event.detail["code"] == "unknown_host"),
        "{:?}",
        audit.iter().map(|e| (&e.event.action, &e.event.detail)).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy_approved_request_passes_exactly_once() {
    let d = Depth::start().await;
    let url = d.cloud_url("127.0.0.1");
    let t = d.token("production", &["cloud-prod:destroy"]);
    let body = delete("vol-prod-db").to_string();
    let r = d.curl(&url, &t, &body, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"), "{r:?}");
    let id = r.json()["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(d.forwarded(), 0);
    // The task token cannot approve; the admin credential on the admin port can.
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(&t), None).await.code(), "task_token_cannot_approve");
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(ADMIN), Some(json!({}))).await.status, 200);
    // The identical request passes once; the replay needs a new approval.
    let r = d.curl(&url, &t, &body, &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(d.cloud.world.destroyed(), ["vol-prod-db"]);
    let r = d.curl(&url, &t, &body, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"), "{r:?}");
    assert_ne!(r.json()["approval_id"], id.as_str());
    assert_eq!(d.forwarded(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy_hold_completes_within_a_second_of_approval() {
    let d = Arc::new(Depth::start().await);
    let t = d.token("production", &["cloud-hold:destroy"]);
    let (d2, t2) = (d.clone(), t.clone());
    // `localhost` is served only by the hold-mode upstream.
    let held = tokio::spawn(async move { d2.curl(&d2.cloud_url("localhost"), &t2, &delete("vol-prod-db").to_string(), &[]).await });
    let id = wait_for_pending(&d).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "the held request was answered before a decision");
    assert_eq!(d.forwarded(), 0);
    let approved_at = Instant::now();
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(ADMIN), Some(json!({}))).await.status, 200);
    let r = held.await.unwrap();
    let took = approved_at.elapsed();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(took < Duration::from_secs(1), "hold completed {took:?} after approval");
    assert_eq!(d.cloud.world.destroyed(), ["vol-prod-db"]);
}

// ---------------------------------------------------------------------------------------
// MCP (JSON-RPC over HTTP): tools/call classified by tool name, tools/list filtered.

/// A recording MCP server over TLS: three tools, every call answered.
struct Mcp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Mcp {
    async fn start(tls: Arc<rustls::ServerConfig>) -> Mcp {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            log.lock().unwrap().push(msg.clone());
                            let answer = |m: &Value| {
                                let result = if m["method"] == "tools/list" {
                                    json!({ "tools": [
                                        { "name": "list_volumes", "description": "list volumes" },
                                        { "name": "delete_volume", "description": "delete a volume" },
                                        { "name": "shell_exec", "description": "run a command" },
                                    ] })
                                } else {
                                    json!({ "content": [{ "type": "text", "text": "done" }] })
                                };
                                json!({ "jsonrpc": "2.0", "id": m["id"], "result": result })
                            };
                            let out = match &msg {
                                Value::Array(batch) => Value::Array(batch.iter().map(answer).collect()),
                                m => answer(m),
                            };
                            let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(out.to_string())));
                            resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
                });
            }
        });
        Mcp { addr, seen }
    }

    fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    rpc(id, "tools/call", json!({ "name": tool, "arguments": arguments }))
}

impl Depth {
    async fn mcp(&self, token: &str, body: &Value) -> Resp {
        self.post("mcp-stg", &[("Authorization", &format!("Bearer {token}")), ("Content-Type", "application/json")], body.to_string().as_bytes()).await
    }
}

fn tool_names(r: &Resp) -> Vec<String> {
    r.json()["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_tool_calls_are_classified_and_tools_list_is_filtered() {
    let d = Depth::start().await;
    let reader = d.token("staging", &["mcp-stg:read"]);
    let destroyer = d.token("staging", &["mcp-stg:destroy"]);

    // tools/list: a read-only task sees only the read tool; undeclared tools (destroy) and
    // the destroy tool are filtered out. A task that may destroy sees them.
    let r = d.mcp(&reader, &rpc(1, "tools/list", json!({}))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(tool_names(&r), ["list_volumes"]);
    let r = d.mcp(&destroyer, &rpc(2, "tools/list", json!({}))).await;
    assert!(tool_names(&r).contains(&"delete_volume".to_owned()), "{:?}", tool_names(&r));

    // tools/call: classified by the tool's name, with its arguments.
    let r = d.mcp(&reader, &call(3, "list_volumes", json!({}))).await;
    assert_eq!(r.status, 200);
    let seen_before = d.mcp.seen().len();
    for (how, body) in [
        ("destroy tool", call(4, "delete_volume", json!({ "volumeId": "vol-staging-db" }))),
        ("undeclared tool", call(5, "shell_exec", json!({ "cmd": "rm -rf /" }))),
        ("batch", json!([rpc(6, "tools/list", json!({})), call(7, "delete_volume", json!({ "volumeId": "vol-staging-db" }))])),
        ("unknown method", rpc(8, "admin/dropAll", json!({}))),
    ] {
        // (An undeclared tool is a destroy whose resource cannot be attributed: production,
        // so it is also cross-environment; either way it is not granted.)
        let r = d.mcp(&reader, &body).await;
        assert_eq!(r.status, 403, "{how}: {}", String::from_utf8_lossy(&r.body));
        assert!(r.json()["policies"].as_array().unwrap().iter().any(|p| p == "airlock-not-granted"), "{how}: {}", String::from_utf8_lossy(&r.body));
    }
    // The resource in the arguments is attributed: a production volume through a staging task.
    let r = d.mcp(&destroyer, &call(9, "delete_volume", json!({ "volumeId": "vol-prod-db" }))).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Without a resource id a destroy is treated as production.
    let r = d.mcp(&destroyer, &call(10, "delete_volume", json!({}))).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Not JSON-RPC: unparsable, refused.
    let r = d.post("mcp-stg", &[("Authorization", &format!("Bearer {destroyer}"))], br#"{"method":"tools/call"}"#).await;
    assert_eq!((r.status, r.code().as_str()), (400, "unparsable_request"));
    assert_eq!(d.mcp.seen().len(), seen_before, "a refused call reached the MCP server");
    // A staging volume by a task that may destroy: forwarded, with the real credential.
    let r = d.mcp(&destroyer, &call(11, "delete_volume", json!({ "volumeId": "vol-staging-db" }))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(d.mcp.seen().last().unwrap()["params"]["arguments"]["volumeId"], "vol-staging-db");

    let audit = d
        .audit_until(|a| {
            a.iter().any(|e| e.event.action == "gateway.request" && e.event.outcome == "allowed" && e.event.detail["operation"] == "delete_volume")
        })
        .await;
    let rec =
        audit.iter().find(|e| e.event.action == "gateway.request" && e.event.outcome == "allowed" && e.event.detail["operation"] == "delete_volume").unwrap();
    assert_eq!(rec.event.detail["resource"], "vol-staging-db");
    assert!(audit.iter().any(|e| e.event.outcome == "denied" && e.event.subject == "mcp-stg/shell_exec"));
}

// ---------------------------------------------------------------------------------------
// Inventory lookup: ids `[[inventory]]` does not list are looked up on the upstream with a
// separate read-only token ([upstream.inventory_lookup]).

/// The fixture's read-only token (queries only), stored as the lookup's vault secret.
const READ_ONLY_TOKEN: &str = "fixture-read-only-token-9876543210";

fn lookup_section(timeout: &str) -> String {
    format!(
        r#"[upstream.inventory_lookup]
secret = "cloud-stg-readonly"
graphql = "query($id: ID!) {{ volume(id: $id) {{ environment }} }}"
environment_pointer = "/data/volume/environment"
ttl = "5m"
negative_ttl = "30s"
timeout = "{timeout}"
"#
    )
}

/// The cloud with volumes the static inventory does not list, and a read-only token.
fn lookup_world() -> World {
    let w = World::standard(CLOUD_TOKEN).with_read_only_token(READ_ONLY_TOKEN);
    w.add_volume("vol-prod-cache", "shop-cache", "production");
    w.add_volume("vol-staging-cache", "shop-cache", "staging");
    for i in 0..4 {
        w.add_volume(&format!("vol-staging-tmp-{i}"), "tmp", "staging");
    }
    w
}

async fn lookup_depth() -> Depth {
    Depth::start_with(lookup_world(), &lookup_section("500ms"), &[("cloud-stg-readonly", "staging", "cloud-stg", READ_ONLY_TOKEN)]).await
}

impl Depth {
    /// Lookup records in the audit log (waiting until there are at least `n`).
    async fn lookups(&self, n: usize) -> Vec<AuditEntry> {
        let all = self.audit_until(|a| a.iter().filter(|e| e.event.action == "gateway.inventory_lookup").count() >= n).await;
        all.into_iter().filter(|e| e.event.action == "gateway.inventory_lookup").collect()
    }

    /// The agent-request audit record of the request answered by `r`.
    async fn request_record(&self, r: &Resp) -> AuditEntry {
        let id = r.header("x-airlock-request-id").expect("request id header").to_owned();
        let all = self.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.request" && e.event.id == id)).await;
        all.into_iter().find(|e| e.event.action == "gateway.request" && e.event.id == id).unwrap_or_else(|| panic!("no gateway.request record {id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_refuses_an_unlisted_production_volume_through_a_staging_task() {
    let d = lookup_depth().await;
    let t = d.token("staging", &["cloud-stg:destroy"]);
    let r = d.gql("cloud-stg", &t, &delete("vol-prod-cache")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "{}", String::from_utf8_lossy(&r.body));
    assert!(d.cloud.world.destroyed().is_empty());
    // The cloud saw exactly one request: the lookup, with the read-only token and nothing of the agent's.
    let seen = d.cloud.world.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {READ_ONLY_TOKEN}")));
    assert!(!seen.iter().any(|s| s.body.contains(&t) || s.headers.iter().any(|(_, v)| v.contains(&t))), "the task token reached the cloud");
    assert!(seen[0].body.contains("vol-prod-cache") && !seen[0].body.contains("volumeDelete"));
    let rec = d.request_record(&r).await;
    assert_eq!(rec.event.outcome, "denied");
    assert!(rec.event.detail["reason"].as_str().unwrap().contains("production"), "{:?}", rec.event.detail);
    let lookups = d.lookups(1).await;
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].event.outcome, "attributed");
    assert_eq!(lookups[0].event.detail["environment"], "production");
    assert_eq!(lookups[0].event.detail["request_id"], rec.event.id.as_str());
    // Static entries still win: vol-prod-db is listed, so no lookup is made for it.
    let r = d.gql("cloud-stg", &t, &delete("vol-prod-db")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    assert_eq!(d.cloud.world.read_only_requests().len(), 1);
    // The read-only credential never shows up in the audit log.
    let all = d.audit_until(|_| true).await;
    assert!(!all.iter().any(|e| serde_json::to_string(&e.event).unwrap().contains(READ_ONLY_TOKEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_attributes_an_unlisted_staging_volume_and_policy_allows_it() {
    let d = lookup_depth().await;
    let t = d.token("staging", &["cloud-stg:destroy"]);
    let r = d.gql("cloud-stg", &t, &delete("vol-staging-cache")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(d.cloud.world.destroyed(), ["vol-staging-cache"]);
    let rec = d.request_record(&r).await;
    assert_eq!((rec.event.detail["resource_environment"].as_str(), rec.event.detail["attribution"].as_str()), (Some("staging"), Some("lookup")));
    // The destroy itself went with the real (read-write) credential, the lookup with the read-only one.
    let seen = d.cloud.world.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Bearer {CLOUD_TOKEN}")));
    // The lookup is per upstream: cloud-prod has none, so there an unlisted id is production (→ approval).
    let p = d.token("production", &["cloud-prod:destroy"]);
    let r = d.gql("cloud-prod", &p, &delete("vol-staging-tmp-0")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"));
    assert_eq!(d.cloud.world.read_only_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_failures_treat_the_destroy_as_production() {
    use airlock_fixture::Fault;
    let d = lookup_depth().await;
    let t = d.token("staging", &["cloud-stg:destroy"]);
    // Each fault on a different staging volume (failures are negatively cached per id).
    let faults =
        [(Fault::Status(500), "vol-staging-tmp-0"), (Fault::Garbage, "vol-staging-tmp-1"), (Fault::Delay(Duration::from_secs(2)), "vol-staging-tmp-2")];
    for (fault, id) in &faults {
        d.cloud.world.set_read_only_fault(Some(fault.clone()));
        let started = Instant::now();
        let r = d.gql("cloud-stg", &t, &delete(id)).await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "{fault:?}: {}", String::from_utf8_lossy(&r.body));
        assert!(started.elapsed() < Duration::from_millis(1500), "{fault:?}: the lookup timeout (500ms) bounds the wait");
        let rec = d.request_record(&r).await;
        assert!(rec.event.detail["reason"].as_str().unwrap().contains("production"), "{fault:?}: {:?}", rec.event.detail);
    }
    assert!(d.cloud.world.destroyed().is_empty());
    let lookups = d.lookups(3).await;
    assert_eq!(lookups.iter().filter(|e| e.event.outcome == "failed").count(), 3, "{lookups:?}");
    let reasons: Vec<&str> = lookups.iter().filter_map(|e| e.event.detail["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("HTTP 500")) && reasons.iter().any(|r| r.contains("not JSON")) && reasons.iter().any(|r| r.contains("within")),
        "{reasons:?}"
    );
    // The upstream recovers: the next id is attributed (the failed ones stay negative until negative_ttl).
    d.cloud.world.set_read_only_fault(None);
    let r = d.gql("cloud-stg", &t, &delete("vol-staging-tmp-3")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = d.gql("cloud-stg", &t, &delete("vol-staging-tmp-0")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"), "a failure is cached as unattributed, not retried per request");
    // An id the cloud does not know is unattributed too.
    let r = d.gql("cloud-stg", &t, &delete("vol-nowhere")).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_answers_are_cached_and_concurrent_misses_share_one_lookup() {
    let d = lookup_depth().await;
    let t = d.token("staging", &["cloud-stg:destroy"]);
    for _ in 0..3 {
        let r = d.gql("cloud-stg", &t, &delete("vol-prod-cache")).await;
        assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    }
    assert_eq!(d.cloud.world.read_only_requests().len(), 1, "within the TTL the lookup endpoint is asked once");
    // Eight agents asking about the same unknown id at once: one lookup.
    d.cloud.world.set_read_only_fault(Some(airlock_fixture::Fault::Delay(Duration::from_millis(200))));
    let body = delete("vol-staging-tmp-1");
    let calls = (0..8).map(|_| d.gql("cloud-stg", &t, &body));
    let answers = futures_join_all(calls).await;
    let passed = answers.iter().filter(|r| r.status == 200).count();
    assert!(passed >= 1, "{:?}", answers.iter().map(|r| (r.status, r.code())).collect::<Vec<_>>());
    assert_eq!(d.cloud.world.read_only_requests().len(), 2, "one lookup for eight concurrent misses");
    let lookups = d.lookups(2).await;
    assert_eq!(lookups.len(), 2);
    // The admin status endpoint reports the same: two lookups sent, both placed the id, and
    // the other 2 + 7 answers came from the cache (or waited on the one in flight).
    let status = d.admin("GET", "/v1/status", None, None).await.json();
    let counters = &status["inventory_lookups"][0];
    assert_eq!(counters["upstream"], "cloud-stg", "{status}");
    assert_eq!((counters["requests"].as_u64(), counters["attributed"].as_u64(), counters["failed"].as_u64()), (Some(2), Some(2), Some(0)), "{status}");
    assert_eq!(counters["cache_hits"].as_u64(), Some(9), "{status}");
}

/// Join futures without another dependency in the test crate.
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    let mut out = Vec::new();
    // Poll them together: a simple select-all loop over pinned futures.
    let mut pending: Vec<_> = set.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.extend(results.into_iter().map(|r| r.expect("every future finished")));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_config_errors_name_file_and_line() {
    let path = std::path::Path::new("/etc/airlock/airlock.toml");
    let at = |text: &str| match Config::parse(text, path) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("expected a config error for:\n{text}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, TestPki::loopback().unwrap().ca_pem).unwrap();
    let base = config_with(443, 444, ca.to_str().unwrap(), &lookup_section("2s"));
    assert!(Config::parse(&base, path).is_ok());
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    // No secret: the lookup table is named.
    let text = base.replace("secret = \"cloud-stg-readonly\"\n", "");
    let e = at(&text);
    assert!(e.starts_with(&format!("{}:{}:", path.display(), line_of(&text, "[upstream.inventory_lookup]"))) && e.contains("secret"), "{e}");
    // A pointer that is not a JSON pointer.
    let text = base.replace("\"/data/volume/environment\"", "\"data.volume.environment\"");
    let e = at(&text);
    assert!(e.starts_with(&format!("{}:{}:", path.display(), line_of(&text, "environment_pointer"))) && e.contains("JSON pointer"), "{e}");
    // The upstream's own read-write secret.
    let text = base.replace("secret = \"cloud-stg-readonly\"", "secret = \"cloud-stg-key\"");
    let e = at(&text);
    let second = text.lines().enumerate().filter(|(_, l)| l.contains("secret = \"cloud-stg-key\"")).nth(1).unwrap().0 + 1;
    assert!(e.starts_with(&format!("{}:{second}:", path.display())) && e.contains("read-only"), "{e}");
    // A mutation is not a lookup; a query without $id cannot be one.
    for (q, why) in [("mutation($id: ID!) {{ volumeDelete(volumeId: $id) }}", "query"), ("query {{ me {{ name }} }}", "$id")] {
        let text = base.replace("query($id: ID!) { volume(id: $id) { environment } }", &q.replace("{{", "{").replace("}}", "}"));
        let e = at(&text);
        assert!(e.starts_with(&format!("{}:{}:", path.display(), line_of(&text, "graphql = "))) && e.contains(why), "{e}");
    }
    // Both or neither of graphql / get.
    let e = at(&base.replace("environment_pointer", "get = \"/v1/volumes/{id}\"\nenvironment_pointer"));
    assert!(e.contains("exactly one of graphql"), "{e}");
    let e = at(&base.replace("ttl = \"5m\"", "ttl = \"5m\"\ntier = \"gold\""));
    assert!(e.contains("gold"), "{e}");

    // The secret must exist in the upstream's environment: checked at start, pointing at its line.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
    let config = Config::parse(&base, path).unwrap();
    let vault = Vault::new(store.clone(), MasterKey::generate());
    let add = |name: String, env: &'static str, up: &'static str| {
        let vault = vault.clone();
        async move { add_secret(&vault, &name, env, up, b"value").await }
    };
    for (up, env) in [("cloud-stg", "staging"), ("cloud-prod", "production"), ("cloud-hold", "production"), ("mcp-stg", "staging")] {
        add(format!("{up}-key"), env, up).await;
    }
    let check = |vault: Vault| {
        let config = config.clone();
        let store = store.clone();
        async move {
            let authority = TokenAuthority::ephemeral();
            let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
            let (audit, _writer) = GroupCommit::start(store, 16);
            let gw = Gateway::new(&config, verifier, Arc::new(vault), Arc::new(PolicyEngine::builtin().unwrap()), Arc::new(audit)).unwrap();
            gw.check_secrets().await
        }
    };
    let secret_line = line_of(&base, "secret = \"cloud-stg-readonly\"");
    let e = check(vault.clone()).await.unwrap_err().to_string();
    assert!(e.contains(&format!("{}:{secret_line}", path.display())) && e.contains("cloud-stg-readonly"), "{e}");
    // In another environment: still refused (a credential is only used in its own environment).
    add("cloud-stg-readonly".into(), "production", "cloud-prod").await;
    let e = check(vault.clone()).await.unwrap_err().to_string();
    assert!(e.contains(&format!("{}:{secret_line}", path.display())), "{e}");
    add("cloud-stg-readonly".into(), "staging", "cloud-stg").await;
    check(vault.clone()).await.unwrap();
}

/// Issue 11, one operation one meaning: a method override, a GraphQL document in the URL,
/// a GraphQL GET, and an MCP request that is not a POST are refused before anything is
/// classified, and reach nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_two_possible_meanings_are_refused() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:read", "mcp-stg:read"]);
    let bearer = format!("Bearer {t}");
    let harmless = json!({ "query": "{ me { name } }" }).to_string();
    let destroy_in_url = "/cloud-stg/graphql?query=mutation%7BvolumeDelete(volumeId%3A%22vol-prod-db%22)%7Bid%7D%7D";
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        // A GraphQL document in the URL next to a harmless body, in two spellings.
        ("POST", destroy_in_url.into(), vec![], 400, "ambiguous_request"),
        ("POST", "/cloud-stg/graphql?operationName=X&Query=1".into(), vec![], 400, "ambiguous_request"),
        // GraphQL over GET (the document is in the URL only).
        ("GET", destroy_in_url.into(), vec![], 405, "method_not_allowed"),
        // Method overrides, as a header and as a parameter.
        ("POST", "/cloud-stg/graphql".into(), vec![("X-HTTP-Method-Override", "DELETE")], 400, "ambiguous_request"),
        ("POST", "/cloud-stg/graphql?_method=DELETE".into(), vec![], 400, "ambiguous_request"),
        ("POST", "/cloud-stg/graphql".into(), vec![("x-method-override", "PUT")], 400, "ambiguous_request"),
        // MCP: a DELETE (ends a session) or GET with a harmless body.
        ("DELETE", "/mcp-stg/graphql".into(), vec![("Mcp-Session-Id", "another-tasks-session")], 405, "method_not_allowed"),
        ("GET", "/mcp-stg/graphql".into(), vec![], 405, "method_not_allowed"),
    ];
    let before = (d.cloud.world.requests().len(), d.mcp.seen().len());
    for (method, target, extra, status, code) in &cases {
        let mut headers: Vec<(&str, &str)> = vec![("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
        headers.extend(extra.iter().copied());
        let r = parse(&raw(d.gateway, &request(method, target, &headers, harmless.as_bytes())).await);
        assert_eq!((r.status, r.code().as_str()), (*status, *code), "{method} {target} {extra:?}: {}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!((d.cloud.world.requests().len(), d.mcp.seen().len()), before, "an ambiguous request reached an upstream");
    assert!(d.cloud.world.destroyed().is_empty());
    // The plain request still passes.
    let r = d.gql("cloud-stg", &t, &json!({ "query": "{ me { name } }" })).await;
    assert_eq!(r.status, 200);
}
