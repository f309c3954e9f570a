//! The preflight [`Detector`] backed by the `airlock-scan` engine.
//!
//! This module owns the adapter between `airlock run`'s preflight seam and the scanner
//! used by `airlock scan`, so that what `airlock run` refuses and what `airlock scan`
//! reports (and `airlock scan --fix` cleans) are the same findings, produced by the same
//! rules. It walks exactly like `airlock scan` (hidden and git-ignored files included,
//! binaries and oversized files skipped).
//!
//! It must never return, print or log a matched value: findings are converted to
//! [`Finding`]s that carry only a place and a rule id, and the scanner's zeroizing
//! secret is dropped here.

use std::path::{Path, PathBuf};

use airlock_scan::{Confidence, ScanOptions, Scanner};

use crate::Error;
use crate::preflight::{Detector, Finding, Location};

/// Preflight detector over the scanner's built-in rules (plus user rule files).
///
/// Findings below `min_confidence` do not refuse a start: preflight blocks an agent, so
/// it acts on what is likely a credential (`medium` and `high` by default), while
/// `airlock scan` still lists low-confidence hits for a human to review.
pub struct ScanDetector {
    scanner: Scanner,
    min_confidence: Confidence,
}

impl ScanDetector {
    /// The built-in rules plus `rule_files`; refuses starts on `medium`+ findings.
    ///
    /// # Errors
    /// [`Error::Preflight`] when a rule file cannot be read or is invalid.
    pub fn new(rule_files: &[PathBuf]) -> Result<Self, Error> {
        let scanner = Scanner::with_rule_files(rule_files).map_err(|e| Error::Preflight(e.to_string()))?;
        Ok(Self { scanner, min_confidence: Confidence::Medium })
    }

    /// Change the confidence at or above which a finding refuses the start.
    #[must_use]
    pub fn with_min_confidence(mut self, c: Confidence) -> Self {
        self.min_confidence = c;
        self
    }
}

impl Detector for ScanDetector {
    fn scan_workspace(&self, root: &Path) -> Result<Vec<Finding>, Error> {
        // Same limits as `airlock scan` (ScanOptions' defaults), so both skip the same files.
        let report = self
            .scanner
            .scan_paths(&[root.to_path_buf()], &ScanOptions::default())
            .map_err(|e| Error::Preflight(format!("cannot scan {}: {e}", root.display())))?;
        let mut out: Vec<Finding> = report
            .findings
            .into_iter()
            .filter(|f| f.confidence >= self.min_confidence)
            .map(|f| {
                let p = PathBuf::from(&f.path);
                let rel = p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p);
                Finding { location: Location::File { path: rel, line: f.line }, detector: f.rule.clone() }
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn flag_value(&self, name: &str, value: &[u8]) -> Option<String> {
        let value = String::from_utf8_lossy(value);
        let report = self.scanner.scan_env("env", &[(name, value.as_ref())]);
        report.findings.into_iter().find(|f| f.confidence >= self.min_confidence).map(|f| f.rule.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_gitignored_env_file_and_never_returns_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".gitignore"), ".env\n").unwrap();
        let value = "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";
        std::fs::write(dir.path().join(".env"), format!("X=1\nGITHUB_TOKEN={value}\n")).unwrap();
        let d = ScanDetector::new(&[]).unwrap();
        let f = d.scan_workspace(dir.path()).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].location, Location::File { path: PathBuf::from(".env"), line: 2 });
        assert!(!format!("{f:?}").contains(value));
    }

    #[test]
    fn clean_workspace_has_no_findings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.rs"), "fn main() { println!(\"hello\"); }\n").unwrap();
        assert!(ScanDetector::new(&[]).unwrap().scan_workspace(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn flags_credential_values_not_ordinary_ones() {
        let d = ScanDetector::new(&[]).unwrap();
        assert!(d.flag_value("AWS_ACCESS_KEY_ID", b"AKIAZ3MSJV4WWQ7XKE5T").is_some());
        assert!(d.flag_value("PATH", b"/usr/local/bin:/usr/bin:/bin").is_none());
        assert!(d.flag_value("HOME", b"/home/dev").is_none());
    }

    #[test]
    fn bad_rule_file_is_a_preflight_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml");
        std::fs::write(&p, "[[rule]]\nid = 3\n").unwrap();
        assert!(matches!(ScanDetector::new(&[p]), Err(Error::Preflight(_))));
    }
}
