//! Envelope encryption of one vault record.
//!
//! Owns the sealed format: `wrapped_key = nonce(24) || XChaCha20-Poly1305(master, dk)`
//! with associated data binding it to the record id and master key id, and
//! `ciphertext = XChaCha20-Poly1305(dk, value)` under `nonce` with associated
//! data binding it to the record's id, name, environment, tier and upstream.
//! It must never return plaintext outside a zeroizing buffer.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use airlock_store::SecretRecord;

use crate::{Error, MasterKey, Result, SecretValue};

const NONCE_LEN: usize = 24;

/// Fill a buffer from the OS CSPRNG. Failure to get randomness is not recoverable.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("the operating system's random number generator failed");
    b
}

/// Length-prefixed concatenation, so ("ab","c") and ("a","bc") differ.
fn aad(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

fn value_aad(rec: &SecretRecord) -> Vec<u8> {
    aad(&["airlock-secret-v1", &rec.id, &rec.name, &rec.environment, &rec.tier, &rec.upstream])
}

fn wrap_aad(rec: &SecretRecord) -> Vec<u8> {
    aad(&["airlock-data-key-v1", &rec.id, &rec.key_id])
}

/// Seal `value` into `rec` with a fresh data key (sets key_id, wrapped_key, nonce, ciphertext).
pub(crate) fn seal(master: &MasterKey, rec: &mut SecretRecord, value: &[u8]) {
    let dk = Zeroizing::new(random::<32>());
    let nonce = random::<NONCE_LEN>();
    rec.key_id = master.id();
    rec.nonce = nonce.to_vec();
    rec.ciphertext = XChaCha20Poly1305::new((&*dk).into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: value, aad: &value_aad(rec) })
        .expect("XChaCha20-Poly1305 encryption of a bounded buffer cannot fail");
    let wrap_nonce = random::<NONCE_LEN>();
    let wrapped = master
        .cipher()
        .encrypt(XNonce::from_slice(&wrap_nonce), Payload { msg: &dk[..], aad: &wrap_aad(rec) })
        .expect("XChaCha20-Poly1305 encryption of a bounded buffer cannot fail");
    rec.wrapped_key = [&wrap_nonce[..], &wrapped[..]].concat();
}

/// Open `rec`'s value. Any authentication failure is reported as corruption of that record.
pub(crate) fn open(master: &MasterKey, rec: &SecretRecord) -> Result<SecretValue> {
    let corrupted = || Error::Corrupted { name: rec.name.clone(), environment: rec.environment.clone() };
    if rec.key_id != master.id() {
        return Err(Error::WrongKey(format!("secret {:?} was sealed by master key {} but the key in use is {}", rec.name, rec.key_id, master.id())));
    }
    if rec.wrapped_key.len() <= NONCE_LEN || rec.nonce.len() != NONCE_LEN {
        return Err(corrupted());
    }
    let (wn, wct) = rec.wrapped_key.split_at(NONCE_LEN);
    let dk = Zeroizing::new(master.cipher().decrypt(XNonce::from_slice(wn), Payload { msg: wct, aad: &wrap_aad(rec) }).map_err(|_| corrupted())?);
    if dk.len() != 32 {
        return Err(corrupted());
    }
    let plain = XChaCha20Poly1305::new_from_slice(&dk)
        .map_err(|_| corrupted())?
        .decrypt(XNonce::from_slice(&rec.nonce), Payload { msg: &rec.ciphertext, aad: &value_aad(rec) })
        .map_err(|_| corrupted())?;
    Ok(SecretValue::new(Zeroizing::new(plain)))
}

/// Seal a fixed check value with the master key, so a wrong key is recognised
/// as such (instead of as "every secret is corrupted").
pub(crate) fn key_check(master: &MasterKey) -> String {
    let nonce = random::<NONCE_LEN>();
    let ct = master
        .cipher()
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: b"airlock-key-check-v1", aad: b"key-check" })
        .expect("encryption of a bounded buffer cannot fail");
    hex::encode([&nonce[..], &ct[..]].concat())
}

/// Whether `check` (from [`key_check`]) opens under `master`.
pub(crate) fn verify_key_check(master: &MasterKey, check: &str) -> bool {
    let Ok(raw) = hex::decode(check) else { return false };
    if raw.len() <= NONCE_LEN {
        return false;
    }
    let (n, ct) = raw.split_at(NONCE_LEN);
    matches!(
        master.cipher().decrypt(XNonce::from_slice(n), Payload { msg: ct, aad: b"key-check" }),
        Ok(p) if p == b"airlock-key-check-v1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> SecretRecord {
        SecretRecord {
            id: "id-1".into(),
            name: "github".into(),
            environment: "staging".into(),
            tier: "primary".into(),
            upstream: "github".into(),
            description: None,
            version: 1,
            key_id: String::new(),
            wrapped_key: vec![],
            nonce: vec![],
            ciphertext: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn round_trip_and_fresh_keys() {
        let k = MasterKey::from_bytes([7; 32]);
        let mut a = rec();
        seal(&k, &mut a, b"s3cret");
        assert_eq!(open(&k, &a).unwrap().expose(), b"s3cret");
        let mut b = rec();
        seal(&k, &mut b, b"s3cret");
        assert_ne!(a.ciphertext, b.ciphertext, "nonce/data key must be fresh per seal");
        assert_ne!(a.wrapped_key, b.wrapped_key);
        assert!(!a.ciphertext.windows(6).any(|w| w == b"s3cret"));
    }

    #[test]
    fn metadata_is_bound() {
        let k = MasterKey::from_bytes([7; 32]);
        let mut a = rec();
        seal(&k, &mut a, b"v");
        for edit in [
            |r: &mut SecretRecord| r.environment = "production".into(),
            |r: &mut SecretRecord| r.name = "other".into(),
            |r: &mut SecretRecord| r.id = "id-2".into(),
            |r: &mut SecretRecord| r.upstream = "evil".into(),
            |r: &mut SecretRecord| r.tier = "backup".into(),
            |r: &mut SecretRecord| r.ciphertext[0] ^= 1,
            |r: &mut SecretRecord| r.wrapped_key[30] ^= 1,
            |r: &mut SecretRecord| r.nonce[0] ^= 1,
        ] {
            let mut b = a.clone();
            edit(&mut b);
            assert!(matches!(open(&k, &b), Err(Error::Corrupted { .. })));
        }
    }

    #[test]
    fn wrong_key_is_named() {
        let mut a = rec();
        seal(&MasterKey::from_bytes([7; 32]), &mut a, b"v");
        assert!(matches!(open(&MasterKey::from_bytes([8; 32]), &a), Err(Error::WrongKey(_))));
        let k = MasterKey::from_bytes([1; 32]);
        let c = key_check(&k);
        assert!(verify_key_check(&k, &c));
        assert!(!verify_key_check(&MasterKey::from_bytes([2; 32]), &c));
        assert!(!verify_key_check(&k, "zz"));
    }
}
