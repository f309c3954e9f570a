//! The preflight scan: secrets an agent could read before it starts.
//!
//! This module owns the [`Detector`] seam `airlock run` uses to look at the workspace
//! (every file, hidden and git-ignored ones included) and at the values of the
//! environment it would pass on, and [`BasicDetector`], a small dependency-free set of
//! high-confidence rules (kept for embedders and tests; `airlock run` itself uses
//! [`crate::scan_detector::ScanDetector`], the `airlock-scan` engine behind this trait).
//!
//! It must never return, print or log a matched value: a [`Finding`] names the place
//! (file and line, or variable name) and the detector, nothing else.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use regex::bytes::{Regex, RegexSet};

use crate::Error;

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A file (path relative to the scanned root) and 1-based line.
    File {
        /// Path relative to the workspace root.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// An environment variable that would be passed to the agent.
    Env {
        /// Variable name.
        name: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File { path, line } => write!(f, "{}:{line}", path.display()),
            Location::Env { name } => write!(f, "environment variable {name}"),
        }
    }
}

/// One secret found: where and by which detector. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Where.
    pub location: Location,
    /// Detector id, e.g. `aws-access-key-id`.
    pub detector: String,
}

/// What `airlock run` needs from a secret scanner.
pub trait Detector: Send + Sync {
    /// Findings in every file under `root`, hidden and git-ignored files included.
    fn scan_workspace(&self, root: &Path) -> Result<Vec<Finding>, Error>;
    /// The id of a detector that flags `value` of variable `name`, if any.
    fn flag_value(&self, name: &str, value: &[u8]) -> Option<String>;
}

/// Files larger than this are not read (they are rarely hand-written secrets).
pub const MAX_FILE: u64 = 1 << 20;

/// A small set of high-confidence rules (cloud keys, VCS tokens, private keys, URLs with
/// passwords, and credential-named assignments with key-like values).
pub struct BasicDetector {
    set: RegexSet,
    ids: Vec<&'static str>,
    regexes: Vec<Regex>,
}

const RULES: &[(&str, &str)] = &[
    ("aws-access-key-id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    ("github-fine-grained-token", r"\bgithub_pat_[A-Za-z0-9_]{40,}"),
    ("gitlab-token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("slack-token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    ("openai-or-anthropic-key", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}"),
    ("stripe-live-key", r"\b[rs]k_live_[A-Za-z0-9]{20,}"),
    ("private-key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
    ("url-with-password", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\x22]+:[^\s:/@'\x22$]{3,}@[^\s]"),
    (
        "credential-assignment",
        r#"(?m)(?i-u)^[ \t]*(?:export[ \t]+)?["']?[A-Za-z0-9_.-]*(?:token|secret|password|passwd|api_?key|access_?key|private_?key|credentials?)[A-Za-z0-9_.-]*["']?[ \t]*[=:][ \t]*["']?([A-Za-z0-9_\-+/=.~]{16,})"#,
    ),
];

impl Default for BasicDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BasicDetector {
    /// Compile the built-in rules.
    pub fn new() -> Self {
        let patterns: Vec<&str> = RULES.iter().map(|(_, p)| *p).collect();
        Self {
            set: RegexSet::new(&patterns).expect("built-in rules compile"),
            ids: RULES.iter().map(|(id, _)| *id).collect(),
            regexes: patterns.iter().map(|p| Regex::new(p).expect("built-in rules compile")).collect(),
        }
    }

    /// `(line, detector)` for every rule match in `data`.
    pub fn scan_bytes(&self, data: &[u8]) -> Vec<(usize, &'static str)> {
        let mut out = Vec::new();
        for i in self.set.matches(data).iter() {
            for m in self.regexes[i].captures_iter(data) {
                // For assignments, judge the value (group 1); otherwise the whole match.
                let value = m.get(1).unwrap_or_else(|| m.get(0).expect("group 0"));
                if self.ids[i] == "credential-assignment" && !looks_like_key(value.as_bytes()) {
                    continue;
                }
                let line = 1 + data[..value.start()].iter().filter(|b| **b == b'\n').count();
                out.push((line, self.ids[i]));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A value that looks generated rather than a placeholder: letters and digits, not one
/// repeated character, not an obvious placeholder word.
fn looks_like_key(v: &[u8]) -> bool {
    let letters = v.iter().any(u8::is_ascii_alphabetic);
    let digits = v.iter().any(u8::is_ascii_digit);
    let distinct = {
        let mut seen = [false; 256];
        v.iter().for_each(|b| seen[*b as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    let lower = String::from_utf8_lossy(v).to_ascii_lowercase();
    let placeholder = ["example", "changeme", "placeholder", "your_", "xxxx", "redacted", "airlock:"].iter().any(|p| lower.contains(p));
    letters && digits && distinct >= 8 && !placeholder
}

impl Detector for BasicDetector {
    fn scan_workspace(&self, root: &Path) -> Result<Vec<Finding>, Error> {
        let found = Mutex::new(Vec::new());
        let walk = ignore::WalkBuilder::new(root)
            .standard_filters(false)
            .hidden(false)
            .follow_links(false)
            .threads(std::thread::available_parallelism().map_or(2, |n| n.get()).min(8))
            .filter_entry(|e| {
                // Git's object store is compressed; scanning it here is wasted work
                // (history is the scanner's job).
                !(e.file_name() == "objects" && e.path().parent().is_some_and(|p| p.file_name().is_some_and(|n| n == ".git")))
            })
            .build_parallel();
        let walk_error: Mutex<Option<String>> = Mutex::new(None);
        walk.run(|| {
            Box::new(|entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        // Unreadable directories: the agent (same uid) cannot read them either.
                        if e.io_error().is_none_or(|io| io.kind() != std::io::ErrorKind::PermissionDenied) {
                            *walk_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        }
                        return ignore::WalkState::Continue;
                    }
                };
                if !entry.file_type().is_some_and(|t| t.is_file()) {
                    return ignore::WalkState::Continue;
                }
                if entry.metadata().is_ok_and(|m| m.len() > MAX_FILE) {
                    return ignore::WalkState::Continue;
                }
                let Ok(data) = std::fs::read(entry.path()) else { return ignore::WalkState::Continue };
                if data.iter().take(1024).any(|b| *b == 0) {
                    return ignore::WalkState::Continue;
                }
                let hits = self.scan_bytes(&data);
                if !hits.is_empty() {
                    let rel = entry.path().strip_prefix(root).unwrap_or(entry.path()).to_path_buf();
                    let mut f = found.lock().unwrap_or_else(|p| p.into_inner());
                    for (line, id) in hits {
                        f.push(Finding { location: Location::File { path: rel.clone(), line }, detector: id.to_owned() });
                    }
                }
                ignore::WalkState::Continue
            })
        });
        if let Some(e) = walk_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(Error::Preflight(format!("cannot walk {}: {e}", root.display())));
        }
        let mut v = found.into_inner().unwrap_or_else(|p| p.into_inner());
        v.sort();
        Ok(v)
    }

    fn flag_value(&self, name: &str, value: &[u8]) -> Option<String> {
        if let Some((_, id)) = self.scan_bytes(value).first() {
            return Some((*id).to_owned());
        }
        // Let the assignment rule see the name too (`FOO_SECRET=…` style).
        let mut line = name.as_bytes().to_vec();
        line.push(b'=');
        line.extend_from_slice(value);
        self.scan_bytes(&line).first().map(|(_, id)| (*id).to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(d: &BasicDetector, s: &str) -> Vec<&'static str> {
        d.scan_bytes(s.as_bytes()).into_iter().map(|(_, id)| id).collect()
    }

    #[test]
    fn detects_common_credentials() {
        let d = BasicDetector::new();
        assert_eq!(ids(&d, "key = AKIAIOSFODNN7EXAMPLQ\n"), ["aws-access-key-id"]);
        assert_eq!(ids(&d, "ghp_0123456789abcdefghijABCDEFGHIJ012345"), ["github-token"]);
        assert_eq!(ids(&d, "-----BEGIN OPENSSH PRIVATE KEY-----\n"), ["private-key"]);
        assert_eq!(ids(&d, "url: postgres://app:s3cr3tpw@db.internal/app"), ["url-with-password"]);
        assert_eq!(ids(&d, "RAILWAY_TOKEN=3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9\n"), ["credential-assignment"]);
        assert_eq!(ids(&d, "export API_KEY=\"q8Wm2Lr7Tz4Kx9Pv3Nb6\"\n"), ["credential-assignment"]);
    }

    #[test]
    fn line_numbers_point_at_the_value() {
        let d = BasicDetector::new();
        assert_eq!(d.scan_bytes(b"# config\n\nDB_PASSWORD=9f8e7d6c5b4a3f2e1d0c\n"), [(3, "credential-assignment")]);
    }

    #[test]
    fn ignores_placeholders_and_prose() {
        let d = BasicDetector::new();
        for s in [
            "API_KEY=your_api_key_here_123",
            "TOKEN=xxxxxxxxxxxxxxxxxxxxxxxx",
            "password: ${DB_PASSWORD}",
            "SECRET=changeme1234567890",
            "the token expires after an hour",
            "GITHUB_TOKEN=airlock:github-token-ref1",
            "url = https://example.com/path@v1",
        ] {
            assert!(ids(&d, s).is_empty(), "false positive on {s:?}: {:?}", ids(&d, s));
        }
    }

    #[test]
    fn env_values_are_flagged_without_the_name_and_with_it() {
        let d = BasicDetector::new();
        assert_eq!(d.flag_value("NOTES", b"AKIAIOSFODNN7EXAMPLQ").as_deref(), Some("aws-access-key-id"));
        assert_eq!(d.flag_value("SERVICE_CREDENTIALS_V", b"3f1c9a7e52b44d0e9a61").as_deref(), Some("credential-assignment"));
        assert_eq!(d.flag_value("PATH", b"/usr/local/bin:/usr/bin:/bin"), None);
        assert_eq!(d.flag_value("LS_COLORS", b"rs=0:di=01;34:ln=01;36:mh=00:pi=40;33"), None);
    }

    #[test]
    fn workspace_scan_includes_hidden_and_ignored_files_and_skips_git_objects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join(".gitignore"), ".env\n").unwrap();
        std::fs::write(root.join(".env"), "STAGING_TOKEN=3f1c9a7e52b44d0e9a61c8e2\n").unwrap();
        std::fs::create_dir_all(root.join(".git/objects/ab")).unwrap();
        std::fs::write(root.join(".git/objects/ab/cd"), "AKIAIOSFODNN7EXAMPLQ").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("src/blob.bin"), b"\0\0AKIAIOSFODNN7EXAMPLQ").unwrap();
        let f = BasicDetector::new().scan_workspace(root).unwrap();
        assert_eq!(f, [Finding { location: Location::File { path: ".env".into(), line: 1 }, detector: "credential-assignment".into() }]);
    }
}
