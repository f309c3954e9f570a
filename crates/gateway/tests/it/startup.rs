//! Startup checks: a secret bound to another environment (or upstream) is a config error
//! that points at the `secret` line.

use std::sync::Arc;

use airlock_gateway::audit::GroupCommit;
use airlock_gateway::config::Config;
use airlock_gateway::{Error, Gateway};
use airlock_policy::PolicyEngine;
use airlock_store::{SqliteStore, Store};
use airlock_token::{Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_vault::{MasterKey, Vault};

async fn check(config: &str, secret_env: &str, secret_upstream: &str) -> Result<(), Error> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).await.unwrap());
    let vault = Vault::new(store.clone(), MasterKey::generate());
    crate::harness::add_secret(&vault, "k", secret_env, secret_upstream, b"value-123456").await;
    let config = Config::parse(config, std::path::Path::new("/etc/airlock.toml")).unwrap();
    let verifier = Arc::new(Verifier::new(TokenAuthority::ephemeral().public_key(), Revocations::new(), VerifierOptions::default()));
    let (audit, _) = GroupCommit::start(store, 16);
    let gw = Gateway::new(&config, verifier, Arc::new(vault), Arc::new(PolicyEngine::builtin().unwrap()), Arc::new(audit)).unwrap();
    gw.check_secrets().await
}

const CONFIG: &str =
    "[[upstream]]\nname = \"api\"\nbase_url = \"https://api.example.com\"\nenvironment = \"production\"\nsecret = \"k\"\ninject = { header = \"x-api-key\" }\n";

#[tokio::test]
async fn secret_from_another_environment_is_a_config_error() {
    let err = check(CONFIG, "staging", "api").await.unwrap_err().to_string();
    assert!(err.starts_with("/etc/airlock.toml:5:"), "{err}");
    assert!(err.contains("staging") && err.contains("production"), "{err}");
    assert!(!err.contains("value-123456"));
}

#[tokio::test]
async fn secret_bound_to_another_upstream_is_a_config_error() {
    let err = check(CONFIG.replace("production", "staging").as_str(), "staging", "other").await.unwrap_err().to_string();
    assert!(err.contains("bound to upstream \"other\""), "{err}");
}

#[tokio::test]
async fn matching_secret_passes() {
    check(CONFIG, "production", "api").await.unwrap();
}
