//! Findings: what a scan reports, with the secret held in zeroizing memory.
//!
//! This module owns the finding record, its fingerprint (stable across runs and line
//! moves) and its masked rendering. It must never expose the secret through `Debug`,
//! `Display` or serialization unless the caller explicitly asks (`--show-secrets`).

use std::fmt;
use std::ops::Range;

use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::rules::Confidence;

/// A secret value. Zeroized on drop; `Debug` prints `Secret(***)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a value (lossy UTF-8).
    #[must_use]
    pub fn from_bytes(b: &[u8]) -> Self {
        Self(Zeroizing::new(String::from_utf8_lossy(b).into_owned()))
    }

    /// The raw value. Callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a finding came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A file under the scanned paths.
    File,
    /// A blob in git history.
    Git,
    /// A process environment.
    Env,
    /// A well-known credential location in the home directory.
    Home,
}

impl Source {
    /// Lowercase name, as in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Git => "git",
            Self::Env => "env",
            Self::Home => "home",
        }
    }
}

/// How a git-history finding's commit is reachable — which decides how to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GitReach {
    /// From a branch, tag, remote-tracking or other reference, or `HEAD`: in `git log -p
    /// --all` (removing it means rewriting history, e.g. `git filter-repo`).
    Refs,
    /// Only from the stash (`refs/stash` or one of its reflog entries): in `git stash show
    /// -p` (removing it means `git stash drop`/`clear`, then expiring the reflog).
    Stash,
    /// Only from a reflog entry (after a `reset --hard`, an amend, a deleted branch): in
    /// `git reflog -p` (removing it means `git reflog expire` and `git gc --prune`).
    Reflog,
}

impl GitReach {
    /// Lowercase name, as in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refs => "refs",
            Self::Stash => "stash",
            Self::Reflog => "reflog",
        }
    }
}

/// One detected credential.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Finding {
    /// Rule id.
    pub rule: String,
    /// Rule description.
    pub description: String,
    /// Path (forward slashes) or pseudo-path (`env`, `env:PID`).
    pub path: String,
    /// 1-based line of the secret's first byte.
    pub line: usize,
    /// 1-based column (Unicode code points) of the secret's first character.
    pub column: usize,
    /// Byte range of the secret in the scanned data (for rewriting the file).
    pub byte_range: Range<usize>,
    /// Confidence after checksum verification.
    pub confidence: Confidence,
    /// Hex of the first 16 bytes of SHA-256(rule id, NUL, secret).
    pub fingerprint: String,
    /// Masked value, e.g. `ghp_…Ab12`, or `****` for short values.
    pub masked: String,
    /// The commit that first introduced it (git history only).
    pub commit: Option<String>,
    /// The repository's work tree (or git directory, for a bare one) as found by
    /// [`crate::Scanner::scan_workspace`]; `path` is then relative to it (git history only,
    /// and only from `scan_workspace`).
    pub repo: Option<String>,
    /// How `commit` is reachable (git history only).
    pub reach: Option<GitReach>,
    /// Which source found it.
    pub source: Source,
    /// The secret itself.
    pub secret: Secret,
}

/// Fingerprint of a secret under a rule: stable across runs, paths and line moves.
#[must_use]
pub fn fingerprint(rule_id: &str, secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    h.update([0u8]);
    h.update(secret);
    hex::encode(&h.finalize()[..16])
}

/// Well-known token prefixes shown in masked values (at most 4 chars are shown).
const KNOWN_PREFIXES: &[&str] = &["AKIA", "ASIA", "AIza", "eyJ", "AGE-", "ATAT", "ATBB", "-----", "PuTTY"];

/// Mask a secret: a recognizable prefix (≤ 4 chars) + `…` + the last 4 chars, or `****`
/// for values shorter than 16 characters.
#[must_use]
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 16 {
        return "****".to_owned();
    }
    let prefix_len = recognizable_prefix_len(secret).min(4);
    let clean = |c: &char| if c.is_control() { '?' } else { *c };
    let head: String = chars[..prefix_len].iter().map(clean).collect();
    let tail: String = chars[chars.len() - 4..].iter().map(clean).collect();
    format!("{head}…{tail}")
}

fn recognizable_prefix_len(s: &str) -> usize {
    if let Some(p) = KNOWN_PREFIXES.iter().find(|p| s.starts_with(**p)) {
        return p.len();
    }
    // letters followed by '_' or '-' within the first 8 chars: ghp_, sk-, xoxb-, glpat-
    let b = s.as_bytes();
    let letters = b.iter().take(8).take_while(|c| c.is_ascii_alphabetic()).count();
    if (2..8).contains(&letters) && matches!(b.get(letters), Some(b'_' | b'-')) {
        return letters + 1;
    }
    0
}

/// Serialized view of a finding: the stable JSON fields. `secret` only when asked.
#[derive(Serialize)]
pub(crate) struct FindingJson<'a> {
    pub rule: &'a str,
    pub description: &'a str,
    pub path: &'a str,
    pub line: usize,
    pub column: usize,
    pub confidence: Confidence,
    pub fingerprint: &'a str,
    pub masked: &'a str,
    pub commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reach: Option<GitReach>,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
}

impl Finding {
    pub(crate) fn json(&self, show_secret: bool) -> FindingJson<'_> {
        FindingJson {
            rule: &self.rule,
            description: &self.description,
            path: &self.path,
            line: self.line,
            column: self.column,
            confidence: self.confidence,
            fingerprint: &self.fingerprint,
            masked: &self.masked,
            commit: self.commit.as_deref(),
            repo: self.repo.as_deref(),
            reach: self.reach,
            source: self.source,
            secret: show_secret.then(|| self.secret.expose()),
        }
    }

    /// Deterministic ordering key: repository (none first), path, line, column, rule, commit.
    pub(crate) fn sort_key(&self) -> (Option<&str>, &str, usize, usize, &str, Option<&str>) {
        (self.repo.as_deref(), &self.path, self.line, self.column, &self.rule, self.commit.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("ghp_00000000000000000000000000000004WZ4EQ"), "ghp_…Z4EQ");
        assert_eq!(mask("glpat-xxxxxxxxxxxxxxxxxxxxxxAb12"), "glpa…Ab12");
        assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(mask("hunter2hunter2"), "****");
        assert_eq!(mask("q8Zr1xVv0pLm3NbT7"), "…NbT7");
        assert!(!mask("abcdefgh\nijklmnop\u{7}qrs").contains('\n'));
    }

    #[test]
    fn debug_hides_secret() {
        let s = Secret::from_bytes(b"supersecretvalue123");
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }

    #[test]
    fn fingerprint_is_stable_and_rule_bound() {
        let a = fingerprint("r1", b"abc");
        assert_eq!(a, fingerprint("r1", b"abc"));
        assert_ne!(a, fingerprint("r2", b"abc"));
        assert_ne!(fingerprint("r1", b"2abc"), fingerprint("r12", b"abc"));
        assert_eq!(a.len(), 32);
    }
}
