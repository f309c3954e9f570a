//! The local airlock CA for forward-proxy mode: create it once, load it, mint leaves.
//!
//! This module owns the CA key pair and certificate in the state directory —
//! `ca.key` (PKCS#8 PEM, mode 0600, written once with
//! [`airlock_state::StateDir::write_new_key`], never overwritten) and `ca.pem` (the
//! certificate, 0644) — plus `ca-bundle.pem` (0644): the airlock CA followed by the
//! system's trusted roots, rewritten at every load, so that one `SSL_CERT_FILE` makes
//! clients trust both the gateway's minted leaves and the real certificates of
//! pass-through hosts. It mints short-lived leaf certificates (ECDSA P-256, SAN = one DNS
//! name or IP address, server-auth only) for hosts the forward proxy terminates.
//!
//! It must never write the CA key anywhere but `ca.key`, never put key material in an
//! error, log or Debug output, and never mint a leaf for anything but a single host name.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use airlock_state::StateDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use crate::error::Error;

/// File name of the CA private key in the state directory (0600).
pub const KEY_FILE: &str = "ca.key";
/// File name of the CA certificate in the state directory (0644).
pub const CERT_FILE: &str = "ca.pem";
/// File name of the trust bundle (airlock CA + system roots) in the state directory (0644).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
/// Lifetime of a minted leaf certificate.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Lifetime of the CA certificate.
const CA_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Where system root bundles usually live (first readable one wins).
const SYSTEM_BUNDLES: &[&str] = &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem", "/etc/ssl/ca-bundle.pem"];

/// The local CA. Holds the signing key in memory; `Debug` shows no key material.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    cert_path: Option<PathBuf>,
    bundle_path: Option<PathBuf>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").field("cert_path", &self.cert_path).finish_non_exhaustive()
    }
}

/// The CA's fixed parameters: the subject is stable so a reloaded key signs as the same issuer.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, "airlock local CA");
    p.distinguished_name.push(DnType::OrganizationName, "airlock");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

fn ca_err(what: impl std::fmt::Display) -> Error {
    Error::LocalCa(what.to_string())
}

impl LocalCa {
    /// Load the CA from `state`, creating `ca.key` and `ca.pem` on first use, and
    /// (re)write `ca-bundle.pem`. The state directory must already exist (`airlock init`).
    pub fn load_or_create(state: &StateDir) -> Result<Self, Error> {
        if !state.has(KEY_FILE) {
            let key = KeyPair::generate().map_err(|e| ca_err(format!("cannot generate a key: {e}")))?;
            let pem = zeroize::Zeroizing::new(key.serialize_pem());
            match state.write_new_key(KEY_FILE, pem.as_bytes()) {
                Ok(()) => {}
                // Another process created it first: use theirs.
                Err(airlock_state::Error::AlreadyInitialized(_)) => {}
                Err(e) => return Err(ca_err(format!("cannot write {}: {e}", state.path(KEY_FILE).display()))),
            }
        }
        let key_pem =
            state.read_key(KEY_FILE).map_err(|e| ca_err(format!("cannot read {}: {e}; fix its mode with chmod 600", state.path(KEY_FILE).display())))?;
        let key_pem = std::str::from_utf8(&key_pem).map_err(|_| ca_err(format!("{} is not PEM", state.path(KEY_FILE).display())))?;
        let key = KeyPair::from_pem(key_pem)
            .map_err(|_| ca_err(format!("{} is not a PKCS#8 PEM private key; move it away to generate a new CA", state.path(KEY_FILE).display())))?;

        // Reuse ca.pem when it is the certificate for this key; otherwise issue it again.
        let cert_path = state.path(CERT_FILE);
        let existing = std::fs::read_to_string(&cert_path).ok().filter(|pem| cert_matches_key(pem, &key));
        let mut ca = match existing {
            Some(pem) => Self::from_parts(key, pem)?,
            None => {
                let ca = Self::self_sign(key)?;
                state.write_public(CERT_FILE, ca.cert_pem.as_bytes()).map_err(|e| ca_err(format!("cannot write {}: {e}", cert_path.display())))?;
                ca
            }
        };
        let bundle = ca.bundle_text();
        state.write_public(BUNDLE_FILE, bundle.as_bytes()).map_err(|e| ca_err(format!("cannot write {}: {e}", state.path(BUNDLE_FILE).display())))?;
        ca.cert_path = Some(cert_path);
        ca.bundle_path = Some(state.path(BUNDLE_FILE));
        Ok(ca)
    }

    /// The public certificate files `ca.pem` and `ca-bundle.pem` in `state`, for the trust
    /// variables of `airlock env` / `airlock run`. When both exist they are used as they are
    /// (the CA key is not read); otherwise the CA is loaded or created first, exactly as
    /// `airlock serve` would.
    pub fn public_files(state: &StateDir) -> Result<(PathBuf, PathBuf), Error> {
        let (cert, bundle) = (state.path(CERT_FILE), state.path(BUNDLE_FILE));
        if !(cert.is_file() && bundle.is_file() && state.has(KEY_FILE)) {
            Self::load_or_create(state)?;
        }
        Ok((cert, bundle))
    }

    /// A fresh in-memory CA that is never written anywhere (tests, benchmarks).
    pub fn ephemeral() -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(|e| ca_err(format!("cannot generate a key: {e}")))?;
        Self::self_sign(key)
    }

    fn self_sign(key: KeyPair) -> Result<Self, Error> {
        let mut p = ca_params();
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + CA_LIFETIME;
        let cert = p.self_signed(&key).map_err(|e| ca_err(format!("cannot self-sign: {e}")))?;
        Self::from_parts(key, cert.pem())
    }

    fn from_parts(key: KeyPair, cert_pem: String) -> Result<Self, Error> {
        let der = rustls_pemfile::certs(&mut cert_pem.as_bytes()).next().and_then(Result::ok).ok_or_else(|| ca_err("the CA certificate is not PEM"))?;
        Ok(Self {
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
            cert_der: der,
            cert_path: None,
            bundle_path: None,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Path of `ca.pem`, when loaded from a state directory.
    pub fn cert_path(&self) -> Option<&Path> {
        self.cert_path.as_deref()
    }

    /// Path of `ca-bundle.pem`, when loaded from a state directory.
    pub fn bundle_path(&self) -> Option<&Path> {
        self.bundle_path.as_deref()
    }

    /// The airlock CA followed by the first system root bundle found (if any).
    fn bundle_text(&self) -> String {
        let mut s = String::with_capacity(256 * 1024);
        s.push_str("# airlock local CA (forward-proxy mode)\n");
        s.push_str(&self.cert_pem);
        for p in SYSTEM_BUNDLES {
            if let Ok(roots) = std::fs::read_to_string(p) {
                s.push_str(&format!("\n# system roots from {p}\n"));
                s.push_str(&roots);
                break;
            }
        }
        s
    }

    /// Mint a leaf certificate for exactly one host (a DNS name or an IP address), valid
    /// from one minute ago for `lifetime`, with a fresh key.
    pub fn mint_leaf(&self, host: &str, lifetime: Duration) -> Result<Arc<CertifiedKey>, Error> {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                let not_dns = || ca_err(format!("{:?} is not a DNS name", host.escape_debug().take(255).collect::<String>()));
                rustls::pki_types::DnsName::try_from(host).map_err(|_| not_dns())?;
                SanType::DnsName(host.to_owned().try_into().map_err(|_| not_dns())?)
            }
        };
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![san];
        p.distinguished_name.push(DnType::CommonName, host);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::minutes(1);
        p.not_after = now + lifetime;
        let key = KeyPair::generate().map_err(|e| ca_err(format!("cannot generate a leaf key: {e}")))?;
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| ca_err(format!("cannot sign a leaf for {host:?}: {e}")))?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = self.provider.key_provider.load_private_key(key_der).map_err(|e| ca_err(format!("cannot load a leaf key: {e}")))?;
        Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
    }
}

/// Whether `pem`'s first certificate carries `key`'s public key.
fn cert_matches_key(pem: &str, key: &KeyPair) -> bool {
    use rcgen::PublicKeyData;
    let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_bytes()).next() else { return false };
    let spki = key.subject_public_key_info();
    // The SPKI appears verbatim in the DER certificate.
    der.as_ref().windows(spki.len()).any(|w| w == spki.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn verify(ca: &LocalCa, leaf: &CertifiedKey, name: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ca.provider.clone()).build().unwrap();
        let sn = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        v.verify_server_cert(&leaf.cert[0], &[], &sn, &[], rustls::pki_types::UnixTime::now()).map(|_| ())
    }

    #[test]
    fn leaves_verify_only_for_their_host() {
        let ca = LocalCa::ephemeral().unwrap();
        let leaf = ca.mint_leaf("backboard.example", LEAF_LIFETIME).unwrap();
        verify(&ca, &leaf, "backboard.example").unwrap();
        assert!(verify(&ca, &leaf, "evil.example").is_err());
        let ip = ca.mint_leaf("127.0.0.1", LEAF_LIFETIME).unwrap();
        verify(&ca, &ip, "127.0.0.1").unwrap();
        assert!(ca.mint_leaf("a b", LEAF_LIFETIME).is_err());
        // A leaf from another CA is not trusted.
        let other = LocalCa::ephemeral().unwrap().mint_leaf("backboard.example", LEAF_LIFETIME).unwrap();
        assert!(verify(&ca, &other, "backboard.example").is_err());
    }

    #[test]
    fn created_once_with_modes_and_reloaded_as_the_same_issuer() {
        let t = tempfile::tempdir().unwrap();
        let state = StateDir::at(t.path().join("state")).unwrap();
        state.create().unwrap();
        let a = LocalCa::load_or_create(&state).unwrap();
        let mode = |n: &str| std::fs::metadata(state.path(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_FILE), 0o644);
        assert_eq!(mode(BUNDLE_FILE), 0o644);
        let key_before = std::fs::read(state.path(KEY_FILE)).unwrap();
        let b = LocalCa::load_or_create(&state).unwrap();
        assert_eq!(std::fs::read(state.path(KEY_FILE)).unwrap(), key_before, "the key is never rewritten");
        assert_eq!(a.cert_pem(), b.cert_pem(), "ca.pem is reused");
        // A leaf minted by the reloaded CA verifies against the original certificate.
        let leaf = b.mint_leaf("api.example", LEAF_LIFETIME).unwrap();
        verify(&a, &leaf, "api.example").unwrap();
        let bundle = std::fs::read_to_string(state.path(BUNDLE_FILE)).unwrap();
        assert!(bundle.contains(a.cert_pem()));
        assert!(!bundle.contains("PRIVATE KEY"));
        assert!(!std::fs::read_to_string(state.path(CERT_FILE)).unwrap().contains("PRIVATE KEY"));
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn loose_key_mode_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let state = StateDir::at(t.path().join("state")).unwrap();
        state.create().unwrap();
        LocalCa::load_or_create(&state).unwrap();
        std::fs::set_permissions(state.path(KEY_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = LocalCa::load_or_create(&state).unwrap_err().to_string();
        assert!(e.contains("ca.key") && !e.contains("PRIVATE"), "{e}");
    }
}
