#![allow(missing_docs)]
//! One gateway decision: cached token verification + environment binding + classification
//! + Cedar policy (`Gateway::admit`), and streaming redaction throughput.
//!
//! Target (issue 3): one decision ≤ 20 µs.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use airlock_gateway::Gateway;
use airlock_gateway::audit::{AuditError, AuditSink};
use airlock_gateway::config::Config;
use airlock_gateway::ports::{Secret, SecretError, SecretSource};
use airlock_gateway::redact::{Needles, RedactBody};
use airlock_policy::PolicyEngine;
use airlock_store::AuditEvent;
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::{Environment, Grant};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};

struct NoSecrets;
#[async_trait::async_trait]
impl SecretSource for NoSecrets {
    async fn get(&self, _: &str, _: &Environment) -> Result<Secret, SecretError> {
        Err(SecretError { not_found: true, message: "bench".into() })
    }
}
struct NoAudit;
#[async_trait::async_trait]
impl AuditSink for NoAudit {
    async fn record(&self, _: AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
    fn record_later(&self, _: AuditEvent) {}
}

const CONFIG: &str = r#"
[[upstream]]
name = "railway-staging"
base_url = "https://backboard.example.com/v2"
environment = "staging"
secret = "railway-staging-token"
inject = { header = "Authorization", format = "Bearer {secret}" }

[[upstream.operation]]
method = "DELETE"
path = "/volumes/{id}"
name = "volumeDelete"
capability = "destroy"
resource = { path = "id" }
"#;

fn decision(c: &mut Criterion) {
    let config = Config::parse(CONFIG, Path::new("bench.toml")).unwrap();
    let authority = TokenAuthority::ephemeral();
    let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
    let policy = Arc::new(PolicyEngine::builtin().unwrap());
    let gw = Gateway::new(&config, verifier, Arc::new(NoSecrets), policy, Arc::new(NoAudit)).unwrap();
    let grants: Vec<Grant> = vec!["railway-staging:write".parse().unwrap()];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token =
        authority.mint(&Claims { task_id: "t-1", agent: "agent", environment: "staging", grants: &grants, purpose: None, expires_at: now + 3600 }).unwrap();
    let req = |method: &str, path: &str| {
        http::Request::builder().method(method).uri(path).header("authorization", format!("Bearer {token}")).body(()).unwrap().into_parts().0
    };
    let allow = req("GET", "/railway-staging/projects/p-1/services?first=10");
    let deny = req("DELETE", "/railway-staging/volumes/vol-9");
    assert!(gw.admit(&allow).is_ok());
    assert_eq!(gw.admit(&deny).unwrap_err().code, "not_granted");
    let mut g = c.benchmark_group("decision");
    g.bench_function("admit_allow_cached_token", |b| b.iter(|| black_box(gw.admit(black_box(&allow)).is_ok())));
    g.bench_function("admit_deny_cached_token", |b| b.iter(|| black_box(gw.admit(black_box(&deny)).is_err())));
    g.finish();
}

fn redaction(c: &mut Criterion) {
    let needles = Needles::new(vec![zeroize::Zeroizing::new(b"sk-live-0123456789abcdef0123456789".to_vec())]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let body = Bytes::from(vec![b'a'; 64 * 1024]);
    let mut g = c.benchmark_group("redaction");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64KiB_body", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = RedactBody::new(Full::new(body.clone()), needles.clone(), Default::default());
                black_box(r.collect().await.unwrap().to_bytes().len())
            })
        })
    });
    g.finish();
}

criterion_group!(benches, decision, redaction);
criterion_main!(benches);
