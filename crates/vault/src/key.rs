//! The vault master key.
//!
//! Owns where the master key comes from — the 0600 key file in the state
//! directory, `AIRLOCK_MASTER_KEY`, or a passphrase stretched with argon2id —
//! and the key-check value in the store that tells a wrong key from corrupted
//! data. It must never print or log key material; a key is only ever held in
//! zeroizing memory.

use std::fmt;

use airlock_state::{StateDir, files};
use airlock_store::Store;
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{key_check, random, verify_key_check};
use crate::{Error, Result};

/// The environment variable that supplies the master key directly (64 hex chars or base64 of 32 bytes).
pub const ENV_MASTER_KEY: &str = "AIRLOCK_MASTER_KEY";

const META_KDF: &str = "vault.kdf";
const META_CHECK: &str = "vault.key_check";

/// The 256-bit key that wraps every data key.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    /// Wrap raw key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Zeroizing::new(b))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_bytes(random::<32>())
    }

    /// Parse 64 hex characters or base64 of 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &[u8]) -> Result<Self> {
        let t = std::str::from_utf8(text).map_err(|_| Error::InvalidKey("not UTF-8 text".into()))?.trim();
        let raw = Zeroizing::new(if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| Error::InvalidKey("bad hex".into()))?
        } else {
            base64::engine::general_purpose::STANDARD.decode(t).map_err(|_| Error::InvalidKey("expected 64 hex characters or base64 of 32 bytes".into()))?
        });
        let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| Error::InvalidKey(format!("expected 32 bytes, got {}", raw.len())))?;
        Ok(Self::from_bytes(arr))
    }

    /// A public fingerprint of the key (16 hex chars), recorded with each sealed record.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"airlock-master-key-id-v1");
        h.update(&self.0[..]);
        hex::encode(&h.finalize()[..8])
    }

    pub(crate) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }
}

/// How the master key of a vault is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// A random key in the state directory's `master.key` (0600).
    Keyfile,
    /// Derived with argon2id from a passphrase; nothing secret on disk.
    Passphrase,
    /// Supplied by `AIRLOCK_MASTER_KEY` on every run (e.g. from a secrets manager); nothing on disk.
    External,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    mode: KeyMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t_cost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p_cost: Option<u32>,
}

/// argon2id parameters for new vaults (OWASP's recommended minimum is 19 MiB, t=2).
const M_COST_KIB: u32 = 64 * 1024;
const T_COST: u32 = 3;
const P_COST: u32 = 1;

fn derive(passphrase: &[u8], kdf: &Kdf) -> Result<MasterKey> {
    let salt = hex::decode(kdf.salt.as_deref().unwrap_or_default()).map_err(|_| Error::InvalidKey("stored salt is not hex".into()))?;
    let params = Params::new(kdf.m_cost.unwrap_or(M_COST_KIB), kdf.t_cost.unwrap_or(T_COST), kdf.p_cost.unwrap_or(P_COST), Some(32))
        .map_err(|e| Error::InvalidKey(format!("stored argon2 parameters are invalid: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, &salt, &mut out[..])
        .map_err(|e| Error::InvalidKey(format!("argon2id failed: {e}")))?;
    Ok(MasterKey(out))
}

fn env_key() -> Result<Option<MasterKey>> {
    match std::env::var_os(ENV_MASTER_KEY) {
        Some(v) if !v.is_empty() => {
            let bytes = Zeroizing::new(v.into_encoded_bytes());
            MasterKey::parse(&bytes).map(Some).map_err(|e| Error::InvalidKey(format!("{ENV_MASTER_KEY}: {e}")))
        }
        _ => Ok(None),
    }
}

/// Set up the master key of a new vault and record how to find it again.
///
/// * `Keyfile`: generate a key and write `master.key` (refuses to overwrite).
/// * `Passphrase`: derive the key from `passphrase` with a fresh salt.
/// * `External`: take the key from `AIRLOCK_MASTER_KEY`.
pub async fn init_master_key(state: &StateDir, store: &dyn Store, mode: KeyMode, passphrase: Option<&[u8]>) -> Result<MasterKey> {
    if store.get_meta(META_KDF).await?.is_some() {
        return Err(airlock_state::Error::AlreadyInitialized(state.path(files::DATABASE)).into());
    }
    let (key, kdf) = match mode {
        KeyMode::Keyfile => {
            let key = MasterKey::generate();
            let text = Zeroizing::new(format!("{}\n", hex::encode(&key.0[..])));
            state.write_new_key(files::MASTER_KEY, text.as_bytes())?;
            (key, Kdf { mode, salt: None, m_cost: None, t_cost: None, p_cost: None })
        }
        KeyMode::Passphrase => {
            let pw = passphrase.ok_or(Error::PassphraseRequired)?;
            if pw.len() < 12 {
                return Err(Error::InvalidKey("the passphrase must be at least 12 characters".into()));
            }
            let kdf = Kdf { mode, salt: Some(hex::encode(random::<16>())), m_cost: Some(M_COST_KIB), t_cost: Some(T_COST), p_cost: Some(P_COST) };
            (derive(pw, &kdf)?, kdf)
        }
        KeyMode::External => {
            let key = env_key()?.ok_or_else(|| Error::InvalidKey(format!("{ENV_MASTER_KEY} is not set")))?;
            (key, Kdf { mode, salt: None, m_cost: None, t_cost: None, p_cost: None })
        }
    };
    store.put_meta_if_absent(META_CHECK, &key_check(&key)).await?;
    let kdf_json = serde_json::to_string(&kdf).expect("serialisable");
    if !store.put_meta_if_absent(META_KDF, &kdf_json).await? {
        return Err(airlock_state::Error::AlreadyInitialized(state.path(files::DATABASE)).into());
    }
    Ok(key)
}

/// Open the master key of an existing vault and check it against the vault.
///
/// `AIRLOCK_MASTER_KEY` overrides the configured source. For passphrase vaults
/// `passphrase` is called once to obtain it (from `AIRLOCK_PASSPHRASE` or a prompt).
pub async fn open_master_key(state: &StateDir, store: &dyn Store, passphrase: impl FnOnce() -> Option<Zeroizing<Vec<u8>>>) -> Result<MasterKey> {
    let kdf: Kdf = match store.get_meta(META_KDF).await? {
        Some(s) => serde_json::from_str(&s).map_err(|e| Error::InvalidKey(format!("stored key settings are malformed: {e}")))?,
        None => return Err(airlock_state::Error::NotInitialized(state.path(files::DATABASE)).into()),
    };
    let check = store.get_meta(META_CHECK).await?.ok_or_else(|| Error::InvalidKey("the vault has no key-check record; the database is incomplete".into()))?;
    let (key, source) = if let Some(k) = env_key()? {
        (k, format!("{ENV_MASTER_KEY} does not match this vault"))
    } else {
        match kdf.mode {
            KeyMode::Keyfile => {
                let text = state.read_key(files::MASTER_KEY)?;
                (MasterKey::parse(&text)?, format!("{} does not match this vault's database", state.path(files::MASTER_KEY).display()))
            }
            KeyMode::Passphrase => {
                let pw = passphrase().ok_or(Error::PassphraseRequired)?;
                (derive(&pw, &kdf)?, "the passphrase is not the one this vault was initialised with".to_owned())
            }
            KeyMode::External => return Err(Error::InvalidKey(format!("this vault's master key is supplied externally: set {ENV_MASTER_KEY}"))),
        }
    };
    if !verify_key_check(&key, &check) {
        return Err(Error::WrongKey(source));
    }
    Ok(key)
}

/// The key mode recorded for this vault, if initialised.
pub async fn key_mode(store: &dyn Store) -> Result<Option<KeyMode>> {
    Ok(match store.get_meta(META_KDF).await? {
        Some(s) => Some(serde_json::from_str::<Kdf>(&s).map_err(|e| Error::InvalidKey(e.to_string()))?.mode),
        None => None,
    })
}
