//! The preflight [`Detector`] backed by the `airlock-scan` engine.
//!
//! This module owns the adapter between `airlock run`'s preflight seam and the scanner
//! used by `airlock scan`, so that what `airlock run` refuses and what `airlock scan`
//! reports (and `airlock scan --fix` cleans) are the same findings, produced by the same
//! rules. It walks exactly like `airlock scan` (hidden and git-ignored files included,
//! binaries and oversized files skipped) and in the same walk finds the git
//! repositories of the workspace (nested and bare ones too), whose references, stash and
//! reflogs it scans as `airlock scan --git-history` does. It owns the preflight's policy
//! on top of the findings: below the refusing confidence, or inside a vendored or
//! generated tree ([`VENDORED_DIRS`]), a finding is listed, not refused; a fingerprint
//! in the baseline (the `airlock scan --write-baseline` format) drops it. With
//! [`ScanDetector::with_cache`], files and git objects a previous preflight found clean
//! are not read again (see `airlock_scan::cache` for why that is sound); the findings
//! are the same.
//!
//! It must never return, print or log a matched value: findings are converted to
//! [`Finding`]s that carry only a place and a rule id, and the scanner's zeroizing
//! secret is dropped here.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use airlock_scan::{CleanCache, Confidence, ScanOptions, Scanner, Source};

use crate::Error;
use crate::preflight::{Detector, Finding, GitReach, Listed, Location, NotRefused, WorkspaceScan};

/// Directory names whose trees hold third-party or generated files: a finding under one
/// (in the workspace or in a file's path in git history) is listed, not refused. A
/// repository's `.git` directory is walked as files (its `config` can hold a token),
/// except the object database, which is scanned as history.
pub const VENDORED_DIRS: &[&str] = &[
    "node_modules",
    "bower_components",
    ".venv",
    "venv",
    "site-packages",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    "vendor",
    "target",
    "dist",
    "build",
];

/// Preflight detector over the scanner's built-in rules (plus user rule files).
///
/// Findings below `min_confidence` do not refuse a start: preflight blocks an agent, so
/// it acts on what is likely a credential (`medium` and `high` by default), while
/// `airlock scan` still lists low-confidence hits for a human to review.
pub struct ScanDetector {
    scanner: Scanner,
    min_confidence: Confidence,
    baseline: HashSet<String>,
    cache_dir: Option<PathBuf>,
}

impl ScanDetector {
    /// The built-in rules plus `rule_files`; refuses starts on `medium`+ findings.
    ///
    /// # Errors
    /// [`Error::Preflight`] when a rule file cannot be read or is invalid.
    pub fn new(rule_files: &[PathBuf]) -> Result<Self, Error> {
        let scanner = Scanner::with_rule_files(rule_files).map_err(|e| Error::Preflight(e.to_string()))?;
        Ok(Self { scanner, min_confidence: Confidence::Medium, baseline: HashSet::new(), cache_dir: None })
    }

    /// Change the confidence at or above which a finding refuses the start.
    #[must_use]
    pub fn with_min_confidence(mut self, c: Confidence) -> Self {
        self.min_confidence = c;
        self
    }

    /// Keep a clean cache in `dir` (`airlock_scan::cache::CACHE_FILE`): each preflight
    /// skips the files and git objects an earlier one found without any finding, and
    /// records the new clean ones. `dir` must be one no agent can read or write — the
    /// airlock state directory. A missing or corrupt cache means a full scan; failing
    /// to write it back only costs the next preflight time.
    #[must_use]
    pub fn with_cache(mut self, dir: &Path) -> Self {
        self.cache_dir = Some(dir.to_path_buf());
        self
    }

    /// Drop findings whose fingerprint is in the baseline file at `path` (the format of
    /// `airlock scan --write-baseline`); they are counted in
    /// [`WorkspaceScan::baselined`]. The file is read now.
    ///
    /// # Errors
    /// [`Error::Preflight`] naming the file when it cannot be read or is not a baseline.
    pub fn with_baseline(mut self, path: &Path) -> Result<Self, Error> {
        self.baseline = airlock_scan::read_baseline(path).map_err(|e| Error::Preflight(e.to_string()))?;
        Ok(self)
    }
}

/// The first path component that names a vendored tree, if any.
fn vendored(paths: &[&Path]) -> Option<String> {
    paths.iter().flat_map(|p| p.components()).find_map(|c| match c {
        Component::Normal(n) => {
            let n = n.to_str()?;
            VENDORED_DIRS.contains(&n).then(|| n.to_owned())
        }
        _ => None,
    })
}

fn relative(root: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p)
}

impl Detector for ScanDetector {
    fn scan_workspace(&self, root: &Path) -> Result<Vec<Finding>, Error> {
        Ok(self.preflight(root)?.refused)
    }

    fn preflight(&self, root: &Path) -> Result<WorkspaceScan, Error> {
        // Same limits as `airlock scan` (ScanOptions' defaults), so both skip the same files.
        let opts = ScanOptions::default();
        let scanned = match &self.cache_dir {
            Some(dir) => {
                let cache = CleanCache::open(dir, &self.scanner);
                let r = self.scanner.scan_workspace_cached(root, &opts, &cache);
                if r.is_ok() {
                    // Best effort: a cache that cannot be written is a slower next start.
                    let _ = cache.save();
                }
                r
            }
            None => self.scanner.scan_workspace(root, &opts),
        };
        let report = scanned.map_err(|e| Error::Preflight(format!("cannot scan {}: {e}", root.display())))?;
        let mut out = WorkspaceScan { repositories: usize::try_from(report.stats.repositories).unwrap_or(usize::MAX), ..WorkspaceScan::default() };
        for f in report.findings {
            if self.baseline.contains(&f.fingerprint) {
                out.baselined += 1;
                continue;
            }
            let (location, tree) = match (f.source, f.repo.as_deref(), f.commit.as_deref()) {
                (Source::Git, Some(repo), Some(commit)) => {
                    let repo = relative(root, repo);
                    let path = PathBuf::from(&f.path);
                    let tree = vendored(&[&repo, &path]);
                    let reach = match f.reach {
                        Some(airlock_scan::GitReach::Stash) => GitReach::Stash,
                        Some(airlock_scan::GitReach::Reflog) => GitReach::Reflog,
                        _ => GitReach::Refs,
                    };
                    (Location::GitHistory { repo, commit: commit.to_owned(), path, line: f.line, reach }, tree)
                }
                _ => {
                    let path = relative(root, &f.path);
                    let tree = vendored(&[&path]);
                    (Location::File { path, line: f.line }, tree)
                }
            };
            let finding = Finding { location, detector: f.rule.clone() };
            match (tree, f.confidence >= self.min_confidence) {
                (None, true) => out.refused.push(finding),
                (Some(dir), _) => out.listed.push(Listed { finding, reason: NotRefused::Vendored { dir } }),
                (None, false) => out.listed.push(Listed { finding, reason: NotRefused::LowConfidence }),
            }
        }
        out.refused.sort();
        out.refused.dedup();
        out.listed.sort();
        out.listed.dedup();
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
    use std::process::Command;

    use super::*;

    const UUID: &str = "3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9";

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

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
    fn the_incident_shape_refuses_a_uuid_under_cloud_token() {
        let dir = tempfile::tempdir().unwrap();
        put(dir.path(), ".env", &format!("CLOUD_TOKEN={UUID}\n"));
        let f = ScanDetector::new(&[]).unwrap().scan_workspace(dir.path()).unwrap();
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].detector, "credential-variable-env");
        assert!(!format!("{f:?}").contains(UUID));
    }

    #[test]
    fn a_secret_only_in_git_history_refuses_with_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        put(root, ".env", &format!("API_TOKEN={UUID}\n"));
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "env"]);
        let commit = git(root, &["rev-parse", "HEAD"]);
        git(root, &["rm", "-q", ".env"]);
        git(root, &["commit", "-qm", "rm"]);
        let p = ScanDetector::new(&[]).unwrap().preflight(root).unwrap();
        assert_eq!(p.repositories, 1);
        assert_eq!(
            p.refused,
            vec![Finding {
                location: Location::GitHistory { repo: PathBuf::new(), commit, path: PathBuf::from(".env"), line: 1, reach: GitReach::Refs },
                detector: "credential-variable-env".into()
            }]
        );
        assert!(p.refused[0].location.remedy().unwrap().contains("filter-repo"));
    }

    #[test]
    fn vendored_trees_and_low_confidence_are_listed_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, "node_modules/pkg/test/.env", &format!("API_TOKEN={UUID}\n"));
        put(root, "app/.venv/lib/python3.12/site-packages/x/fixture.sh", &format!("export API_TOKEN={UUID}\n"));
        put(root, "notes.txt", "the admin password is Vk7rQ2mZp9 until Friday\n");
        let p = ScanDetector::new(&[]).unwrap().preflight(root).unwrap();
        assert!(p.refused.is_empty(), "{:?}", p.refused);
        let reasons: Vec<(String, NotRefused)> = p.listed.iter().map(|l| (l.finding.location.to_string(), l.reason.clone())).collect();
        assert_eq!(
            reasons,
            vec![
                ("app/.venv/lib/python3.12/site-packages/x/fixture.sh:1".into(), NotRefused::Vendored { dir: ".venv".into() }),
                ("node_modules/pkg/test/.env:1".into(), NotRefused::Vendored { dir: "node_modules".into() }),
                ("notes.txt:1".into(), NotRefused::LowConfidence),
            ]
        );
    }

    #[test]
    fn a_baseline_drops_what_it_lists_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        put(root, ".env", &format!("CLOUD_TOKEN={UUID}\n"));
        let scanner = Scanner::builtin().unwrap();
        let report = scanner.scan_paths(&[root.to_path_buf()], &ScanOptions::default()).unwrap();
        let base = tempfile::tempdir().unwrap();
        let bl = base.path().join("baseline.json");
        airlock_scan::write_baseline(&bl, &report.findings).unwrap();
        // the same secret also in history: one fingerprint covers both
        git(root, &["init", "-q"]);
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "env"]);
        put(root, "deploy.sh", "export DEPLOY_TOKEN=Tq9Lm4XaWz81kdPq0\n");
        let p = ScanDetector::new(&[]).unwrap().with_baseline(&bl).unwrap().preflight(root).unwrap();
        assert_eq!(p.baselined, 2, "{p:?}");
        assert_eq!(p.refused.len(), 1, "a secret not in the baseline still refuses: {:?}", p.refused);
        assert_eq!(p.refused[0].location, Location::File { path: "deploy.sh".into(), line: 1 });
        // a bad baseline is a preflight error naming the file
        std::fs::write(&bl, "{}").unwrap();
        match ScanDetector::new(&[]).unwrap().with_baseline(&bl) {
            Err(Error::Preflight(m)) => assert!(m.contains("baseline.json"), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_cached_preflight_refuses_the_same_and_a_remote_url_token_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        put(root, "src/main.rs", "fn main() {}\n");
        put(root, ".env", &format!("API_TOKEN={UUID}\n"));
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "first"]);
        let d = ScanDetector::new(&[]).unwrap().with_cache(state.path());
        let first = d.preflight(root).unwrap();
        assert!(state.path().join(airlock_scan::cache::CACHE_FILE).is_file());
        assert_eq!(d.preflight(root).unwrap(), first, "the cache changes nothing in the answer");
        assert_eq!(first.refused.len(), 2, "{first:?}"); // the file and its blob in history
        // a token in the remote URL of .git/config refuses too
        git(root, &["remote", "add", "origin", "https://x-access-token:Tq9Lm4XaWz81kdPq0Vk7rQ2mZ@git.example.com/o/r.git"]);
        let p = d.preflight(root).unwrap();
        assert!(p.refused.iter().any(|f| matches!(&f.location, Location::File { path, .. } if path == Path::new(".git/config"))), "{:?}", p.refused);
        assert!(!format!("{p:?}").contains("Tq9Lm4XaWz81kdPq0Vk7rQ2mZ"));
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
