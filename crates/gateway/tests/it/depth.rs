//! Gateway depth against the fixture cloud (one TLS GraphQL endpoint for every
//! environment, recording what it receives): GraphQL classification, resource
//! attribution, approvals through the admin API, and raw credentials on the way out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_fixture::tls::TestPki;
use airlock_fixture::{RunningFixture, World};
use airlock_gateway::Gateway;
use airlock_gateway::approvals::AdminToken;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::config::Config;
use airlock_gateway::server::{self, AdminState, Running};
use airlock_policy::PolicyEngine;
use airlock_store::{AuditEntry, AuditFilter, SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::{Grant, Name, Tier};
use airlock_vault::{MasterKey, NewSecret, SecretValue, Vault};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::harness::{Resp, parse, raw, request, time_now};

/// The fixture's one API token (valid on every environment, like the incident's).
const CLOUD_TOKEN: &str = "fixture-cloud-token-0123456789";
const ADMIN: &str = "admin-credential-for-tests-0123456789";

struct Depth {
    gateway: SocketAddr,
    admin: SocketAddr,
    cloud: RunningFixture,
    authority: TokenAuthority,
    store: Arc<dyn Store>,
    _running: Running,
    _dir: tempfile::TempDir,
}

fn config(port: u16, ca: &str) -> String {
    let up = |name: &str, env: &str, extra: &str| {
        format!(
            r#"[[upstream]]
name = "{name}"
base_url = "https://127.0.0.1:{port}/graphql"
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
    s += &up("cloud-stg", "staging", "");
    s += &up("cloud-prod", "production", "approval = { mode = \"reject\", ttl = \"10m\" }");
    s += &up("cloud-hold", "production", "approval = { mode = \"hold\", hold_timeout = \"20s\" }");
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
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("airlock.db")).await.unwrap());
        let pki = TestPki::loopback().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cloud = airlock_fixture::serve(listener, Arc::new(World::standard(CLOUD_TOKEN)), Some(pki.server.clone()));
        let ca_path = dir.path().join("cloud-ca.pem");
        std::fs::write(&ca_path, &pki.ca_pem).unwrap();
        let config = Config::parse(&config(cloud.addr.port(), ca_path.to_str().unwrap()), &dir.path().join("airlock.toml")).unwrap();

        let vault = Vault::new(store.clone(), MasterKey::generate());
        for (up, env) in [("cloud-stg", "staging"), ("cloud-prod", "production"), ("cloud-hold", "production")] {
            let spec = NewSecret {
                name: Name::parse("secret", &format!("{up}-key")).unwrap(),
                environment: env.parse().unwrap(),
                tier: Tier::Primary,
                upstream: Name::parse("upstream", up).unwrap(),
                description: None,
            };
            vault.add(&spec, &SecretValue::new(Zeroizing::new(CLOUD_TOKEN.as_bytes().to_vec()))).await.unwrap();
        }
        let authority = TokenAuthority::ephemeral();
        let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
        let policy = Arc::new(PolicyEngine::builtin().unwrap());
        let (audit, _writer) = GroupCommit::start(store.clone(), 256);
        let stats = audit.stats();
        let gw = Gateway::new(&config, verifier, Arc::new(vault), policy, Arc::new(audit)).unwrap().with_approvals(store.clone());
        gw.check_secrets().await.unwrap();
        let admin = AdminState::new(&config, Some(stats)).with_approvals(gw.approvals(), AdminToken::from_file_contents(format!("{ADMIN}\n").as_bytes()));
        let running = server::start(Arc::new(gw), config.listen, config.admin_listen, admin).await.unwrap();
        Depth { gateway: running.agent_addr, admin: running.admin_addr, cloud, authority, store, _running: running, _dir: dir }
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
        let mut all = Vec::new();
        for _ in 0..100 {
            all = self.store.list_audit(&AuditFilter::default()).await.unwrap();
            if done(&all) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        all
    }
}

fn delete(id: &str) -> Value {
    json!({ "query": format!("mutation {{ volumeDelete(volumeId: \"{id}\") }}") })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_queries_pass_with_the_real_credential() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:read"]);
    let r = d.gql("cloud-stg", &t, &json!({ "query": "query V($e: String) { volumes(environment: $e) { id } me { name } }", "variables": { "e": "staging" } })).await;
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
            ("second operation", json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "B" })),
            ("harmless operationName", json!({ "query": format!("query A {{ me {{ name }} }} mutation B {{ volumeDelete(volumeId: \"{id}\") }}"), "operationName": "A" })),
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
    let r = d.gql("cloud-stg", &t, &json!({ "query": "mutation { a: volumeDelete(volumeId: \"vol-staging-db\") b: volumeDelete(volumeId: \"vol-prod-db\") }" })).await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Bodies that cannot be classified are refused.
    for body in [&b"{not json"[..], br#"{"query":"mutation { volumeDelete("}"#, br#"{"query":"{me}","query":"mutation{volumeDelete(volumeId:\"vol-staging-db\")}"}"#] {
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
    assert_eq!((items[0]["operation"].as_str(), items[0]["resource"].as_str(), items[0]["environment"].as_str()), (Some("volumeDelete"), Some("vol-prod-db"), Some("production")));

    let r = d.admin("POST", &format!("/v1/approvals/{id}/approve"), Some(ADMIN), Some(json!({ "note": "restore drill" }))).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["status"], "approved");
    // Deciding twice conflicts; unknown ids are 404.
    assert_eq!(d.admin("POST", &format!("/v1/approvals/{id}/deny"), Some(ADMIN), Some(json!({ "reason": "x" }))).await.status, 409);
    assert_eq!(d.admin("POST", "/v1/approvals/nope/approve", Some(ADMIN), None).await.code(), "approval_not_found");

    // A different request does not ride on the approval.
    let r = d.gql("cloud-prod", &t, &json!({ "query": "mutation { volumeDelete(volumeId: \"vol-prod-db\") backupDelete(backupId: \"bkp-prod-db-1\") }" })).await;
    assert_eq!(r.status, 403);
    assert_eq!(d.forwarded(), 0);
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
    assert!(audit.iter().any(|e| e.event.action == "approval.approved" && e.event.subject == id && e.event.actor == "admin" && e.event.detail["note"] == "restore drill"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_credentials_never_leave() {
    let d = Depth::start().await;
    let t = d.token("staging", &["cloud-stg:read"]);
    let auth = format!("Bearer {t}");
    let query = json!({ "query": "{ me { name } }" }).to_string();
    for (name, value) in [
        ("X-GitHub-Token", "ghp_R4nd0mL00k1ngT0k3nF0undInW0rkspac3"),
        ("X-Backup-Auth", "token github_pat_11AAAAAAA0abcdefghijklmnopqrstuvwxyz0123456789"),
        ("X-Aws-Key", "AKIAIOSFODNN7EXAMPLE"),
    ] {
        let r = d.post("cloud-stg", &[("Authorization", &auth), ("Content-Type", "application/json"), (name, value)], query.as_bytes()).await;
        assert_eq!((r.status, r.code().as_str()), (403, "raw_credential"), "{name}");
        assert!(!String::from_utf8_lossy(&r.raw).contains(value), "the answer echoed the credential");
    }
    // In the body (GraphQL variables), too.
    let body = json!({ "query": "query($k: String) { me { name } }", "variables": { "k": "ASIAIOSFODNN7EXAMPLE" } });
    let r = d.gql("cloud-stg", &t, &body).await;
    assert_eq!(r.code(), "raw_credential");
    assert_eq!(d.forwarded(), 0);
    // The task token itself is not a raw credential.
    assert_eq!(d.gql("cloud-stg", &t, &json!({ "query": "{ me { name } }" })).await.status, 200);
    let audit = d.audit_until(|a| a.iter().filter(|e| e.event.action == "gateway.alert").count() >= 4).await;
    let alerts: Vec<_> = audit.iter().filter(|e| e.event.action == "gateway.alert").collect();
    assert_eq!(alerts.len(), 4);
    assert_eq!(alerts[0].event.detail["location"], "header:x-github-token");
    assert_eq!(alerts[0].event.detail["kind"], "github_token");
    let all = serde_json::to_string(&audit.iter().map(|e| &e.event.detail).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("AKIAIOSFODNN7EXAMPLE") && !all.contains("ghp_R4nd0m"), "a credential reached the audit log");
}
