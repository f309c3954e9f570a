//! The gateway's view of the crates it depends on: token verification and the vault.
//!
//! This module owns two small traits — [`TokenVerifier`] and [`SecretSource`] — so the
//! pipeline can be tested with fakes and the real `airlock-token` / `airlock-vault` plug
//! in through thin adapters, plus [`SecretCache`], which keeps fetched secrets in memory
//! (zeroized on drop) for a short TTL so the vault is not asked on every request.
//!
//! It must never log, format or return a secret value except through [`Secret::expose`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_types::{Environment, Grant, Name, Tier};
use zeroize::Zeroizing;

/// A verified task token: who is asking, for which task, in which environment, with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdentity {
    /// Task id.
    pub task_id: String,
    /// The agent the task belongs to.
    pub agent: Name,
    /// The environment the task is bound to.
    pub environment: Environment,
    /// What the task may do.
    pub grants: Vec<Grant>,
    /// Why the task exists.
    pub purpose: Option<String>,
    /// Expiry, unix seconds.
    pub expires_at: i64,
}

/// Why a token was refused, with a stable code (`token_invalid`, `token_expired`, `token_revoked`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable reason (never contains the token).
    pub message: String,
}

/// Verifies task tokens. Must be fast (cached) and must honour expiry and revocation.
pub trait TokenVerifier: Send + Sync + 'static {
    /// Verify `token`, returning the task it stands for.
    fn verify(&self, token: &str) -> Result<Arc<TaskIdentity>, TokenRejection>;
}

/// A secret value with its vault metadata. The value is zeroized when dropped.
pub struct Secret {
    value: Zeroizing<Vec<u8>>,
    /// The environment the secret belongs to.
    pub environment: Environment,
    /// Its tier.
    pub tier: Tier,
    /// The upstream it may be sent to, if the vault records one.
    pub upstream: Option<String>,
}

impl Secret {
    /// Wrap a value and its metadata.
    pub fn new(value: Vec<u8>, environment: Environment, tier: Tier, upstream: Option<String>) -> Self {
        Self { value: Zeroizing::new(value), environment, tier, upstream }
    }

    /// The secret bytes. Only injection and redaction call this.
    pub fn expose(&self) -> &[u8] {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("value", &"[redacted]")
            .field("environment", &self.environment)
            .field("tier", &self.tier)
            .field("upstream", &self.upstream)
            .finish()
    }
}

/// Why a secret could not be fetched. The message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    /// Whether the secret does not exist (as opposed to the vault being unavailable).
    pub not_found: bool,
    /// What went wrong.
    pub message: String,
}

/// Where secret values come from (the vault).
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// Fetch the secret named `name`, for use with `upstream` in `environment`.
    ///
    /// Implementations backed by a vault that keys secrets by (name, environment) should
    /// return the one in `environment`; the gateway re-checks the metadata either way.
    async fn get(&self, name: &str, environment: &Environment) -> Result<Secret, SecretError>;
}

/// A TTL cache in front of a [`SecretSource`].
pub struct SecretCache {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    entries: Mutex<HashMap<(String, Environment), (Instant, Arc<Secret>)>>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl SecretCache {
    /// Cache `source` for `ttl` (zero disables caching).
    pub fn new(source: Arc<dyn SecretSource>, ttl: Duration) -> Self {
        Self { source, ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The secret, from cache when fresh.
    pub async fn get(&self, name: &str, environment: &Environment) -> Result<Arc<Secret>, SecretError> {
        let key = (name.to_owned(), environment.clone());
        if let Some((at, s)) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(s.clone());
            }
        }
        let secret = Arc::new(self.source.get(name, environment).await?);
        if !self.ttl.is_zero() {
            self.entries.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Instant::now(), secret.clone()));
        }
        Ok(secret)
    }

    /// Forget every cached secret (after a rotation).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
