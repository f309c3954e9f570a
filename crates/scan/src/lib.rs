//! airlock scan: find every credential an agent could read.
//!
//! This crate owns secret detection: the rule format and the built-in rules
//! (`rules/*.toml`, embedded at build time), the matcher engine, the sources (files
//! including gitignored and hidden ones, git history, process environments, the
//! well-known credential locations of a home directory), the reporters (text, JSON,
//! SARIF) and fingerprint baselines. It is CLI-agnostic: the `airlock scan` command,
//! `airlock run`'s preflight and the gateway's raw-credential check all call it.
//!
//! It must never log, print, `Debug`-format or put in an error message a secret value:
//! secrets live only in [`Secret`] (zeroized on drop, `Debug` redacted) and reach
//! output only through the reporters when the caller asks for `show_secrets`.
//!
//! # Rule format
//! ```toml
//! [defaults]               # optional: placeholder stop-list for rules whose confidence != high
//! allow = ['''(?i)^(changeme|example)$''']
//! [[rule]]
//! id = "github-pat-classic"  # unique
//! description = "GitHub personal access token"
//! keywords = ["ghp_"]       # ASCII, case-insensitive prefilter (may be empty only with `paths`)
//! regex = '''\b(ghp_[A-Za-z0-9]{36})\b'''  # secret = group `secret`, else first group, else match
//! checksum = "github"       # optional, see [`checksum`]
//! checksum_fail = "drop"    # drop (default) | low
//! confidence = "high"       # high | medium | low ; checksum-valid => high
//! min_entropy = 3.0         # optional Shannon entropy floor (bits/byte) on the secret
//! paths = '''(^|/)\.netrc$''' # optional regex on the path (forward slashes)
//! allow = ['''…''']         # optional regexes on the secret that suppress
//! allow_match = ['''…''']   # optional regexes on the whole match (key and context) that
//!                          # suppress: a credential word inside a longer word (`BYPASS`)
//! tags = ["scm"]          # `generic` (or an id starting `generic`): yields to a specific
//!                          # rule on the same bytes; `generic` + `context`: also wins over
//!                          # the other generic rules
//! examples_true = ["…"]     # each must yield a finding of this rule
//! examples_false = ["…"]    # each must yield none of this rule
//! ```
//! Patterns are compiled for bytes with ASCII semantics for `\w`, `\d`, `\s` and `(?i)`
//! (a pattern that needs Unicode classes such as `\p{L}` falls back to Unicode mode).

pub mod baseline;
pub mod cache;
pub mod checksum;
pub mod engine;
pub mod finding;
pub mod report;
pub mod rules;
pub mod sources;

use std::time::Duration;

pub use baseline::{read_baseline, write_baseline};
pub use cache::CleanCache;
pub use engine::{INLINE_ALLOW, Scanner};
pub use finding::{Finding, GitReach, Secret, Source, fingerprint, mask};
pub use report::{write_json, write_sarif, write_summary, write_text};
pub use rules::{Confidence, Rule, RuleSet};
pub use sources::env::{environ_of_pid, process_env};
pub use sources::home::{HOME_LOCATIONS, HomeLocation, home_locations};

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
}

/// The embedded built-in rule files as (file name, TOML text), sorted by name.
#[must_use]
pub fn builtin_rule_files() -> &'static [(&'static str, &'static str)] {
    builtin::BUILTIN_RULE_FILES
}

/// Default size cap: files larger than this are skipped (and counted).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// Options for a scan.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Files (and blobs) larger than this many bytes are skipped and counted.
    pub max_file_size: u64,
    /// Show a progress bar on stderr when stderr is a terminal.
    pub progress: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self { max_file_size: DEFAULT_MAX_FILE_SIZE, progress: false }
    }
}

impl ScanOptions {
    /// Options with a given size cap.
    #[must_use]
    pub fn with_max_file_size(mut self, n: u64) -> Self {
        self.max_file_size = n;
        self
    }

    /// Options with the progress bar on or off.
    #[must_use]
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
}

/// Counters for a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanStats {
    /// Files (or blobs, or environments) scanned.
    pub files_scanned: u64,
    /// Skipped because they look binary (NUL in the first 8 KiB).
    pub skipped_binary: u64,
    /// Skipped because they exceed the size cap.
    pub skipped_large: u64,
    /// Skipped because they could not be read (permissions, vanished).
    pub skipped_unreadable: u64,
    /// Bytes scanned.
    pub bytes_scanned: u64,
    /// Findings suppressed by the baseline.
    pub baselined: u64,
    /// Git repositories whose history was scanned ([`Scanner::scan_workspace`]).
    pub repositories: u64,
    /// Files or blobs not read because the [`CleanCache`] knew them clean.
    pub cached: u64,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl ScanStats {
    /// Add another scan's counters.
    pub fn merge(&mut self, o: &Self) {
        self.files_scanned += o.files_scanned;
        self.skipped_binary += o.skipped_binary;
        self.skipped_large += o.skipped_large;
        self.skipped_unreadable += o.skipped_unreadable;
        self.bytes_scanned += o.bytes_scanned;
        self.baselined += o.baselined;
        self.repositories += o.repositories;
        self.cached += o.cached;
        self.elapsed += o.elapsed;
    }
}

/// Findings (in deterministic order) and counters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ScanReport {
    /// Sorted by path, line, column, rule, commit.
    pub findings: Vec<Finding>,
    /// Counters.
    pub stats: ScanStats,
}

impl ScanReport {
    /// Merge another report, keeping the deterministic order.
    pub fn merge(&mut self, other: Self) {
        self.findings.extend(other.findings);
        self.stats.merge(&other.stats);
        sort_findings(&mut self.findings);
    }

    /// Drop findings whose fingerprint is in `baseline`; counts them in `stats.baselined`.
    pub fn apply_baseline(&mut self, baseline: &std::collections::HashSet<String>) {
        let before = self.findings.len();
        self.findings.retain(|f| !baseline.contains(&f.fingerprint));
        self.stats.baselined += (before - self.findings.len()) as u64;
    }
}

/// Sort findings deterministically (path, line, column, rule, commit).
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// Everything that can go wrong in a scan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rule file is not valid TOML or does not follow the rule format.
    #[error("rule file {origin} is invalid: {reason}; fix the file (see the rule format in the airlock-scan docs)")]
    RuleFile {
        /// The file.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// One rule is invalid.
    #[error("rule {id:?} in {origin} is invalid: {reason}")]
    Rule {
        /// The file.
        origin: String,
        /// The rule id.
        id: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A path given to scan does not exist.
    #[error("{path} does not exist; pass an existing file or directory")]
    NotFound {
        /// The path.
        path: String,
    },
    /// The git repository could not be read.
    #[error("could not read git history of {path}: {reason}; is it a git repository (or inside one)?")]
    Git {
        /// The repository path.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A baseline file is malformed.
    #[error("baseline file {path} is invalid: {reason}; regenerate it with --write-baseline")]
    Baseline {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}
