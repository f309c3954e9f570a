//! The preflight scan: secrets an agent could read before it starts.
//!
//! This module owns the [`Detector`] seam `airlock run` uses to look at the workspace
//! (every file, hidden and git-ignored ones included) and at the values of the
//! environment it would pass on. The implementation `airlock run` uses is
//! [`crate::scan_detector::ScanDetector`], the `airlock-scan` engine behind this trait.
//!
//! It must never return, print or log a matched value: a [`Finding`] names the place
//! (file and line, or variable name) and the detector, nothing else.

use std::path::{Path, PathBuf};

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
