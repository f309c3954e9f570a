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

use airlock_types::{Environment, Tier};
use zeroize::Zeroizing;

/// A verified task token: who is asking, for which task, in which environment, with what.
///
/// This is `airlock_token::VerifiedTask`; fakes in tests build it directly.
pub type TaskIdentity = airlock_token::VerifiedTask;

/// Why a token was refused, with the code the agent is answered with (`token_invalid`,
/// `token_expired`, `token_revoked`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    /// The answer's code.
    pub code: crate::codes::RefusalCode,
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

type CacheKey = (String, Environment);

/// A TTL cache in front of a [`SecretSource`].
pub struct SecretCache {
    source: Arc<dyn SecretSource>,
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Instant, Arc<Secret>)>>,
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
        if let Some((at, s)) = self.entries.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(s.clone());
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

/// The real verifier: Biscuit signature, expiry, attenuation and revocation checks, cached.
impl TokenVerifier for airlock_token::Verifier {
    fn verify(&self, token: &str) -> Result<Arc<TaskIdentity>, TokenRejection> {
        airlock_token::Verifier::verify(self, token)
            .map_err(|e| TokenRejection { code: crate::codes::RefusalCode::for_token(e.code()), message: e.to_string() })
    }
}

/// The real vault: the secret named by the upstream, in the upstream's environment.
#[async_trait::async_trait]
impl SecretSource for airlock_vault::Vault {
    async fn get(&self, name: &str, environment: &Environment) -> Result<Secret, SecretError> {
        match airlock_vault::Vault::get(self, name, Some(environment)).await {
            Ok(s) => {
                let env = s
                    .meta
                    .environment
                    .parse()
                    .map_err(|_| SecretError { not_found: false, message: format!("secret {name:?} has an invalid environment in the vault") })?;
                let tier = s.meta.tier.parse().unwrap_or(Tier::Primary);
                Ok(Secret::new(s.value.expose().to_vec(), env, tier, Some(s.meta.upstream.clone())))
            }
            Err(airlock_vault::Error::NotFound { .. }) => {
                // Say where it does exist, so a wrong-environment binding reads as one.
                let elsewhere = match airlock_vault::Vault::find(self, name, None).await {
                    Ok(rec) => format!("; it exists in environment {:?}, and a credential is only used in its own environment", rec.environment),
                    Err(airlock_vault::Error::Ambiguous { environments, .. }) => {
                        format!("; it exists in environments {}, and a credential is only used in its own environment", environments.join(", "))
                    }
                    Err(_) => "; add it with `airlock secret add`".to_owned(),
                };
                Err(SecretError { not_found: true, message: format!("no secret named {name:?} in environment {:?}{elsewhere}", environment.as_str()) })
            }
            Err(e) => Err(SecretError { not_found: false, message: e.to_string() }),
        }
    }
}
