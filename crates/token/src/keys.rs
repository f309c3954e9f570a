//! The broker's signing key and minting.
//!
//! Owns the Ed25519 root key in the state directory (`token.key`, 0600; its
//! public half in `token.pub`) and the authority block of a new token. It must
//! never write the private key anywhere else or print it.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_state::{StateDir, files};
use biscuit_auth::builder::{Algorithm, date, fact, string};
use biscuit_auth::{Biscuit, KeyPair, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::{BlockClaims, Error, Result, TOKEN_PREFIX};

/// Holds the root key and mints task tokens.
pub struct TokenAuthority {
    keys: KeyPair,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenAuthority(public={})", self.keys.public().to_bytes_hex())
    }
}

/// The claims of a token to mint. Prefer [`crate::Broker::start_task`], which
/// also records and audits the task; minting alone is for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct Claims<'a> {
    /// Task id.
    pub task_id: &'a str,
    /// Agent name.
    pub agent: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Grants.
    pub grants: &'a [airlock_types::Grant],
    /// Purpose.
    pub purpose: Option<&'a str>,
    /// Expiry, unix seconds.
    pub expires_at: i64,
}

impl TokenAuthority {
    /// Generate a new root key and write it into the state directory (never overwrites).
    pub fn init(state: &StateDir) -> Result<Self> {
        let keys = KeyPair::new();
        let private = Zeroizing::new(format!("{}\n", keys.private().to_bytes_hex()));
        state.write_new_key(files::TOKEN_KEY, private.as_bytes())?;
        state.write_public(files::TOKEN_PUBLIC_KEY, format!("{}\n", keys.public().to_bytes_hex()).as_bytes())?;
        Ok(Self { keys })
    }

    /// Load the root key from the state directory.
    pub fn load(state: &StateDir) -> Result<Self> {
        let text = state.read_key(files::TOKEN_KEY)?;
        let hex = std::str::from_utf8(&text).map_err(|_| Error::Key("token.key is not text".into()))?.trim();
        let private = PrivateKey::from_bytes_hex(hex, Algorithm::Ed25519)
            .map_err(|e| Error::Key(format!("{} is not a valid Ed25519 private key: {e}", state.path(files::TOKEN_KEY).display())))?;
        Ok(Self { keys: KeyPair::from(&private) })
    }

    /// A key pair held only in memory (tests and benchmarks).
    pub fn ephemeral() -> Self {
        Self { keys: KeyPair::new() }
    }

    /// The public key gateways verify with.
    pub fn public_key(&self) -> PublicKey {
        self.keys.public()
    }

    /// Sign a token for `c` (no store, no audit).
    pub fn mint(&self, c: &Claims<'_>) -> Result<String> {
        let exp = UNIX_EPOCH + Duration::from_secs(u64::try_from(c.expires_at).map_err(|_| Error::TtlInvalid("expiry before 1970".into()))?);
        let map = |e: biscuit_auth::error::Token| Error::Invalid(format!("cannot build token: {e}"));
        let claims = BlockClaims { v: 1, grants: Some(c.grants.to_vec()), exp: c.expires_at };
        let mut b = Biscuit::builder()
            .fact(fact("airlock_task", &[string(c.task_id)]))
            .map_err(map)?
            .fact(fact("agent", &[string(c.agent)]))
            .map_err(map)?
            .fact(fact("environment", &[string(c.environment)]))
            .map_err(map)?
            .fact(fact("expires", &[date(&exp)]))
            .map_err(map)?
            .check(biscuit_auth::builder::Check::try_from(format!("check if time($t), $t <= {}", rfc3339_date(&exp)).as_str()).map_err(map)?)
            .map_err(map)?
            .context(serde_json::to_string(&claims).expect("serialisable"));
        let grants: BTreeSet<String> = c.grants.iter().map(|g| g.to_string()).collect();
        for g in &grants {
            b = b.fact(fact("grant", &[string(g)])).map_err(map)?;
        }
        if let Some(p) = c.purpose {
            b = b.fact(fact("purpose", &[string(p)])).map_err(map)?;
        }
        let token = b.build(&self.keys).map_err(map)?;
        Ok(format!("{TOKEN_PREFIX}{}", token.to_base64().map_err(map)?))
    }
}

pub(crate) fn rfc3339_date(t: &SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    crate::rfc3339(secs as i64)
}

/// Load the broker's public key: `token.pub` in the state directory.
pub fn load_public_key(state: &StateDir) -> Result<PublicKey> {
    let p = state.path(files::TOKEN_PUBLIC_KEY);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::State(airlock_state::Error::NotInitialized(p.clone()))
        } else {
            Error::Key(format!("cannot read {}: {e}", p.display()))
        }
    })?;
    PublicKey::from_bytes_hex(text.trim(), Algorithm::Ed25519).map_err(|e| Error::Key(format!("{} is not a valid public key: {e}", p.display())))
}
