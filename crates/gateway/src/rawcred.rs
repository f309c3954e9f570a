//! Raw credentials on the way out: the built-in detector behind
//! [`crate::pipeline::RawCredentialCheck`].
//!
//! A request that carries a credential airlock did not issue means the agent found a
//! secret somewhere the preflight missed. This module owns a small, fast detector for the
//! most common kinds — GitHub tokens (`ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_`,
//! `github_pat_`), AWS access key ids (`AKIA`/`ASIA` + 16) and PEM private keys — over
//! request headers, the request target and the buffered body. It never matches airlock's
//! own task tokens (`alk_…`), and a [`Finding`] names the kind and the place, never the
//! value. The scanner crate's detector engine can replace it through the trait.

use aho_corasick::AhoCorasick;
use http::HeaderMap;

/// A credential found in a request: what kind, and where (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Detector id, e.g. `github_token`, `aws_access_key_id`, `private_key`.
    pub kind: &'static str,
    /// Where: `header:<name>`, `target` or `body`.
    pub location: String,
}

/// The built-in detector.
#[derive(Debug)]
pub struct BuiltinDetector {
    prefixes: AhoCorasick,
}

/// (prefix, kind, minimum tail length, tail alphabet).
const PATTERNS: &[(&str, &str, usize, Tail)] = &[
    ("ghp_", "github_token", 36, Tail::Alnum),
    ("gho_", "github_token", 36, Tail::Alnum),
    ("ghs_", "github_token", 36, Tail::Alnum),
    ("ghu_", "github_token", 36, Tail::Alnum),
    ("ghr_", "github_token", 36, Tail::Alnum),
    ("github_pat_", "github_token", 22, Tail::AlnumUnderscore),
    ("AKIA", "aws_access_key_id", 16, Tail::UpperDigit),
    ("ASIA", "aws_access_key_id", 16, Tail::UpperDigit),
    ("-----BEGIN ", "private_key", 0, Tail::PemPrivateKey),
];

#[derive(Debug, Clone, Copy)]
enum Tail {
    Alnum,
    AlnumUnderscore,
    UpperDigit,
    PemPrivateKey,
}

impl Default for BuiltinDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BuiltinDetector {
    /// Build the detector.
    pub fn new() -> Self {
        let prefixes = AhoCorasick::new(PATTERNS.iter().map(|p| p.0)).expect("static patterns build");
        Self { prefixes }
    }

    /// The first credential in `hay`, if any.
    pub fn find_in(&self, hay: &[u8]) -> Option<&'static str> {
        for m in self.prefixes.find_overlapping_iter(hay) {
            let (prefix, kind, min, tail) = PATTERNS[m.pattern().as_usize()];
            let start = m.start();
            // A match must start a token: not in the middle of a word, and never inside an
            // airlock task token (alk_ + base64url).
            if start > 0 && is_word(hay[start - 1]) {
                continue;
            }
            if inside_task_token(hay, start) {
                continue;
            }
            let rest = &hay[m.end()..];
            let ok = match tail {
                Tail::Alnum => run(rest, |b| b.is_ascii_alphanumeric()) == min,
                Tail::AlnumUnderscore => run(rest, |b| b.is_ascii_alphanumeric() || b == b'_') >= min,
                Tail::UpperDigit => run(rest, |b| b.is_ascii_uppercase() || b.is_ascii_digit()) == min && !rest.get(min).is_some_and(|b| b.is_ascii_alphanumeric()),
                Tail::PemPrivateKey => {
                    let line = &rest[..rest.len().min(64)];
                    let end = line.windows(5).position(|w| w == b"-----").unwrap_or(line.len());
                    line[..end].ends_with(b"PRIVATE KEY") && line[..end].iter().all(|b| b.is_ascii_uppercase() || *b == b' ')
                }
            };
            let _ = prefix;
            if ok {
                return Some(kind);
            }
        }
        None
    }
}

impl crate::pipeline::RawCredentialCheck for BuiltinDetector {
    fn check(&self, headers: &HeaderMap, target: &str, body: Option<&[u8]>) -> Option<Finding> {
        for (name, value) in headers {
            if let Some(kind) = self.find_in(value.as_bytes()) {
                return Some(Finding { kind, location: format!("header:{name}") });
            }
        }
        if let Some(kind) = self.find_in(target.as_bytes()) {
            return Some(Finding { kind, location: "target".into() });
        }
        if let Some(kind) = body.and_then(|b| self.find_in(b)) {
            return Some(Finding { kind, location: "body".into() });
        }
        None
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn run(s: &[u8], f: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|b| f(**b)).count()
}

/// Whether position `at` lies inside an `alk_…` token (base64url characters back to `alk_`).
fn inside_task_token(hay: &[u8], at: usize) -> bool {
    let mut i = at;
    while i > 0 && (hay[i - 1].is_ascii_alphanumeric() || hay[i - 1] == b'_' || hay[i - 1] == b'-' || hay[i - 1] == b'=') {
        i -= 1;
    }
    hay[i..].starts_with(airlock_token::TOKEN_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::RawCredentialCheck as _;

    const GH: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    #[test]
    fn finds_the_built_in_kinds() {
        let d = BuiltinDetector::new();
        assert_eq!(d.find_in(format!("token {GH}").as_bytes()), Some("github_token"));
        assert_eq!(d.find_in(b"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"), Some("github_token"));
        assert_eq!(d.find_in(b"key=AKIAIOSFODNN7EXAMPLE&x"), Some("aws_access_key_id"));
        assert_eq!(d.find_in(b"ASIAIOSFODNN7EXAMPLE"), Some("aws_access_key_id"));
        assert_eq!(d.find_in(b"{\"k\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\"}"), Some("private_key"));
        assert_eq!(d.find_in(b"-----BEGIN OPENSSH PRIVATE KEY-----"), Some("private_key"));
    }

    #[test]
    fn ignores_look_alikes_and_task_tokens() {
        let d = BuiltinDetector::new();
        for s in [
            "ghp_short",
            "xghp_0123456789abcdefghijABCDEFGHIJ012345",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----",
            "alk_EnQKCghAKIAIOSFODNN7EXAMPLE_ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "query { volumes { id } }",
        ] {
            assert_eq!(d.find_in(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn check_names_the_place_not_the_value() {
        let d = BuiltinDetector::new();
        let mut h = HeaderMap::new();
        h.insert("x-upstream-key", http::HeaderValue::from_str(GH).unwrap());
        let f = d.check(&h, "/stg/x", None).unwrap();
        assert_eq!(f, Finding { kind: "github_token", location: "header:x-upstream-key".into() });
        assert!(!format!("{f:?}").contains("ghp_0"));
        assert_eq!(d.check(&HeaderMap::new(), "/stg/x?k=AKIAIOSFODNN7EXAMPLE", None).unwrap().location, "target");
        assert_eq!(d.check(&HeaderMap::new(), "/", Some(GH.as_bytes())).unwrap().location, "body");
    }
}
