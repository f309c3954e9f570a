//! Secrets at rest.
//!
//! This crate owns the vault: envelope encryption of secret values (a fresh
//! XChaCha20-Poly1305 data key per secret, wrapped by the master key), the
//! master key itself (key file, `AIRLOCK_MASTER_KEY`, or an argon2id-derived
//! passphrase key) and the metadata that binds a secret to an environment, a
//! tier and an upstream.
//!
//! The associated data of every ciphertext binds it to the record's id, name,
//! environment, tier and upstream: a sealed value copied onto another row, or a
//! row whose metadata was edited in the database, fails to decrypt.
//!
//! Plaintext only ever lives in [`SecretValue`] (zeroized on drop, redacted in
//! `Debug`). This crate must never log, print or return a value inside an
//! error, and never write plaintext anywhere.

mod crypto;
mod key;

use std::fmt;
use std::sync::Arc;

use airlock_store::{SecretRecord, Store};
use airlock_types::{Environment, Name, Tier};
use serde::Serialize;
use zeroize::Zeroizing;

pub use key::{ENV_MASTER_KEY, KeyMode, MasterKey, init_master_key, key_mode, open_master_key};

/// Why a vault operation failed. No variant ever carries a secret value.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master key (file, environment or passphrase) does not match the vault.
    #[error("wrong master key: {0}")]
    WrongKey(String),
    /// The master key material is malformed.
    #[error("invalid master key: {0}")]
    InvalidKey(String),
    /// A passphrase was needed but none was supplied.
    #[error("this vault is protected by a passphrase: set AIRLOCK_PASSPHRASE or run from a terminal to be prompted")]
    PassphraseRequired,
    /// A stored secret failed authenticated decryption.
    #[error(
        "secret {name:?} (environment {environment}) cannot be decrypted: its stored ciphertext is corrupted or was moved from another record. Restore it from backup or `airlock secret rm` and add it again"
    )]
    Corrupted {
        /// The secret's name.
        name: String,
        /// The secret's environment.
        environment: String,
    },
    /// No secret with this name (in this environment).
    #[error("no secret named {name:?}{}; see `airlock secret list`", .environment.as_ref().map(|e| format!(" in environment {e}")).unwrap_or_default())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The environment asked for, if any.
        environment: Option<String>,
    },
    /// A name exists in several environments and none was specified.
    #[error("secret {name:?} exists in several environments ({}); say which with --env", .environments.join(", "))]
    Ambiguous {
        /// The name asked for.
        name: String,
        /// Every environment holding that name.
        environments: Vec<String>,
    },
    /// The value to store is empty.
    #[error("refusing to store an empty secret value (nothing was read from the input)")]
    EmptyValue,
    /// The value is larger than the vault accepts.
    #[error("secret value is {0} bytes; the vault accepts at most 64 KiB")]
    TooLarge(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] airlock_store::Error),
    /// The state directory failed (missing key file, loose permissions…).
    #[error(transparent)]
    State(#[from] airlock_state::Error),
}

/// Result alias for the vault.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Largest value the vault stores.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// A plaintext secret value. Zeroized on drop; `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Wrap bytes (taking ownership, so no unzeroized copy is left behind).
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The plaintext bytes. Call sites are the few places that must use the value.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// What the vault knows about a secret, without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretMeta {
    /// Record id.
    pub id: String,
    /// Name, unique per environment.
    pub name: String,
    /// Environment.
    pub environment: String,
    /// `primary` or `backup`.
    pub tier: String,
    /// The upstream the secret may be sent to.
    pub upstream: String,
    /// Operator description.
    pub description: Option<String>,
    /// Rotation counter, starting at 1.
    pub version: i64,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last rotated, RFC 3339.
    pub updated_at: String,
}

impl From<&SecretRecord> for SecretMeta {
    fn from(r: &SecretRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            environment: r.environment.clone(),
            tier: r.tier.clone(),
            upstream: r.upstream.clone(),
            description: r.description.clone(),
            version: r.version,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A secret to add.
#[derive(Debug, Clone)]
pub struct NewSecret {
    /// Name.
    pub name: Name,
    /// Environment.
    pub environment: Environment,
    /// Tier.
    pub tier: Tier,
    /// The upstream it may be sent to.
    pub upstream: Name,
    /// Operator description.
    pub description: Option<String>,
}

/// A secret fetched for use: its metadata and its plaintext.
#[derive(Debug, Clone)]
pub struct Secret {
    /// Metadata.
    pub meta: SecretMeta,
    /// Plaintext.
    pub value: SecretValue,
}

/// The vault: sealed records in a [`Store`], opened with a [`MasterKey`].
#[derive(Clone)]
pub struct Vault {
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault").field("key_id", &self.key.id()).finish_non_exhaustive()
    }
}

fn check_value(v: &SecretValue) -> Result<()> {
    if v.is_empty() {
        return Err(Error::EmptyValue);
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(Error::TooLarge(v.len()));
    }
    Ok(())
}

impl Vault {
    /// A vault over `store`, opened with `key` (see [`open_master_key`]).
    pub fn new(store: Arc<dyn Store>, key: MasterKey) -> Self {
        Self { store, key: Arc::new(key) }
    }

    /// Seal and store a new secret.
    pub async fn add(&self, spec: &NewSecret, value: &SecretValue) -> Result<SecretMeta> {
        check_value(value)?;
        let t = now();
        let mut rec = SecretRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: spec.name.to_string(),
            environment: spec.environment.to_string(),
            tier: spec.tier.to_string(),
            upstream: spec.upstream.to_string(),
            description: spec.description.clone(),
            version: 1,
            key_id: String::new(),
            wrapped_key: Vec::new(),
            nonce: Vec::new(),
            ciphertext: Vec::new(),
            created_at: t,
            updated_at: t,
        };
        crypto::seal(&self.key, &mut rec, value.expose());
        self.store.insert_secret(&rec).await?;
        Ok(SecretMeta::from(&rec))
    }

    /// Find the record for `name`, in `environment` if given; a name present in
    /// several environments must be qualified.
    pub async fn find(&self, name: &str, environment: Option<&Environment>) -> Result<SecretRecord> {
        match environment {
            Some(env) => {
                self.store.get_secret(name, env.as_str()).await?.ok_or_else(|| Error::NotFound { name: name.to_owned(), environment: Some(env.to_string()) })
            }
            None => {
                let mut all = self.store.find_secrets(name).await?;
                match all.len() {
                    0 => Err(Error::NotFound { name: name.to_owned(), environment: None }),
                    1 => Ok(all.pop().expect("one element")),
                    _ => Err(Error::Ambiguous { name: name.to_owned(), environments: all.into_iter().map(|r| r.environment).collect() }),
                }
            }
        }
    }

    /// Decrypt a secret for use.
    pub async fn get(&self, name: &str, environment: Option<&Environment>) -> Result<Secret> {
        let rec = self.find(name, environment).await?;
        self.open(&rec)
    }

    /// Decrypt a record already fetched (used by caches).
    pub fn open(&self, rec: &SecretRecord) -> Result<Secret> {
        let value = crypto::open(&self.key, rec)?;
        Ok(Secret { meta: SecretMeta::from(rec), value })
    }

    /// Metadata of every secret.
    pub async fn list(&self) -> Result<Vec<SecretMeta>> {
        Ok(self.store.list_secrets().await?.iter().map(SecretMeta::from).collect())
    }

    /// Replace a secret's value, keeping its metadata; a fresh data key is used.
    pub async fn rotate(&self, name: &str, environment: Option<&Environment>, value: &SecretValue) -> Result<SecretMeta> {
        check_value(value)?;
        let mut rec = self.find(name, environment).await?;
        // Refuse to rotate something we cannot open: it would hide a wrong key.
        crypto::open(&self.key, &rec)?;
        let expected = rec.version;
        rec.version += 1;
        rec.updated_at = now();
        crypto::seal(&self.key, &mut rec, value.expose());
        self.store.replace_secret(&rec, expected).await?;
        Ok(SecretMeta::from(&rec))
    }

    /// Delete a secret.
    pub async fn remove(&self, name: &str, environment: Option<&Environment>) -> Result<SecretMeta> {
        let rec = self.find(name, environment).await?;
        self.store.delete_secret(&rec.id).await?;
        Ok(SecretMeta::from(&rec))
    }
}
