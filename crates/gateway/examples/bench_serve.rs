//! A self-contained gateway for `scripts/bench-gateway.sh`: SQLite audit store and vault in
//! a scratch directory, an ephemeral token authority, one plain-http loopback upstream.
//!
//! Usage: bench_serve <scratch-dir> <listen-addr> <upstream-port>
//! Writes `<scratch-dir>/token` (a task token with `bench:write`) and serves until killed.
#![allow(missing_docs)]

use std::sync::Arc;

use airlock_gateway::Gateway;
use airlock_gateway::audit::{AuditError, AuditSink, GroupCommit};
use airlock_gateway::config::Config;
use airlock_gateway::server::{self, AdminState};
use airlock_policy::PolicyEngine;
use airlock_store::AuditEvent;
use airlock_store::{SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::{Grant, Name, Tier};
use airlock_vault::{MasterKey, NewSecret, SecretValue, Vault};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, listen, port) = (std::path::PathBuf::from(&args[1]), &args[2], &args[3]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("airlock.db")).await.unwrap());
        let vault = Vault::new(store.clone(), MasterKey::generate());
        let spec = NewSecret {
            name: Name::parse("secret", "bench-key").unwrap(),
            environment: "staging".parse().unwrap(),
            tier: Tier::Primary,
            upstream: Name::parse("upstream", "bench").unwrap(),
            description: None,
        };
        vault.add(&spec, &SecretValue::new(zeroize::Zeroizing::new(b"sk-bench-0123456789abcdef0123456789".to_vec()))).await.unwrap();
        let text = format!(
            "[gateway]\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"bench\"\nbase_url = \"http://127.0.0.1:{port}\"\nallow_insecure = true\nenvironment = \"staging\"\nsecret = \"bench-key\"\ninject = {{ header = \"Authorization\", format = \"Bearer {{secret}}\" }}\nmax_body = 4294967296\n"
        );
        let config = Config::parse(&text, &dir.join("airlock.toml")).unwrap();
        let authority = TokenAuthority::ephemeral();
        let grants: Vec<Grant> = vec!["bench:write".parse().unwrap()];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let token = authority
            .mint(&Claims { task_id: "bench-task", agent: "bench", environment: "staging", grants: &grants, purpose: None, expires_at: now + 7200 })
            .unwrap();
        std::fs::write(dir.join("token"), &token).unwrap();
        let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
        let (audit, _writer) = GroupCommit::start(store.clone(), config.audit_batch);
        let stats = audit.stats();
        // AIRLOCK_BENCH_NO_AUDIT=1: a null audit sink, to separate proxy cost from audit cost (diagnostic only).
        let sink: Arc<dyn AuditSink> = if std::env::var_os("AIRLOCK_BENCH_NO_AUDIT").is_some() {
            Arc::new(NullAudit)
        } else if std::env::var_os("AIRLOCK_BENCH_NO_OUTCOME").is_some() {
            Arc::new(NoOutcome(audit))
        } else {
            Arc::new(audit)
        };
        // AIRLOCK_BENCH_NO_DECISION_CACHE=1: evaluate Cedar on every request (what a workload
        // without repeated identical requests in the same second pays).
        let mut policy = PolicyEngine::builtin().unwrap();
        if std::env::var_os("AIRLOCK_BENCH_NO_DECISION_CACHE").is_some() {
            policy = policy.without_decision_cache();
        }
        let gw = Gateway::new(&config, verifier, Arc::new(vault), Arc::new(policy), sink).unwrap();
        gw.check_secrets().await.unwrap();
        let running = server::start(Arc::new(gw), config.listen, config.admin_listen, AdminState::new(&config, Some(stats.clone()))).await.unwrap();
        eprintln!("bench gateway on {} (admin {})", running.agent_addr, running.admin_addr);
        tokio::signal::ctrl_c().await.ok();
        eprintln!(
            "audit: committed={} batches={}",
            stats.committed.load(std::sync::atomic::Ordering::Relaxed),
            stats.batches.load(std::sync::atomic::Ordering::Relaxed)
        );
    });
}

struct NullAudit;
#[async_trait::async_trait]
impl AuditSink for NullAudit {
    async fn record(&self, _: AuditEvent) -> Result<(), AuditError> {
        Ok(())
    }
    fn record_later(&self, _: AuditEvent) {}
}

/// Diagnostic: durable request records only, outcome records dropped.
struct NoOutcome(GroupCommit);
#[async_trait::async_trait]
impl AuditSink for NoOutcome {
    async fn record(&self, e: AuditEvent) -> Result<(), AuditError> {
        self.0.record(e).await
    }
    fn record_later(&self, _: AuditEvent) {}
}
