//! The preflight scan: secrets an agent could read before it starts.
//!
//! This module owns the [`Detector`] seam `airlock run` uses to look at the workspace
//! (every file, hidden and git-ignored ones included, and the history of every git
//! repository in it: references, stash and reflogs) and at the values of the
//! environment it would pass on, and the vocabulary of the answer: which findings refuse
//! the run, which are only listed and why ([`NotRefused`]), how many a baseline
//! suppressed, and the fix for a secret in git history ([`Location::remedy`]). The
//! implementation `airlock run` uses is [`crate::scan_detector::ScanDetector`], the
//! `airlock-scan` engine behind this trait.
//!
//! It must never return, print or log a matched value: a [`Finding`] names the place
//! (file and line, commit and path, or variable name) and the detector, nothing else.

use std::path::{Path, PathBuf};

use crate::Error;

/// How a commit in git history is reachable, which decides how to get rid of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GitReach {
    /// From a branch, tag, remote-tracking reference or `HEAD` (`git log -p --all`).
    Refs,
    /// Only from the stash, current or older entries (`git stash show -p`).
    Stash,
    /// Only from a reflog entry: after `reset --hard`, an amend, a deleted branch
    /// (`git reflog -p`).
    Reflog,
}

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
    /// A blob in the history of a git repository inside the workspace.
    GitHistory {
        /// The repository's directory relative to the workspace root (empty when the
        /// workspace itself is the repository).
        repo: PathBuf,
        /// The commit that introduced the secret (full hex id).
        commit: String,
        /// The file's path inside the repository at that commit.
        path: PathBuf,
        /// 1-based line in that version of the file.
        line: usize,
        /// How the commit is reachable.
        reach: GitReach,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File { path, line } => write!(f, "{}:{line}", path.display()),
            Location::Env { name } => write!(f, "environment variable {name}"),
            Location::GitHistory { repo, commit, path, line, reach } => {
                let short = commit.get(..12).unwrap_or(commit);
                let via = match reach {
                    GitReach::Refs => "git history",
                    GitReach::Stash => "git stash",
                    GitReach::Reflog => "git reflog",
                };
                if repo.as_os_str().is_empty() {
                    write!(f, "{via} {short}:{}:{line}", path.display())
                } else {
                    write!(f, "{via} of {} {short}:{}:{line}", repo.display(), path.display())
                }
            }
        }
    }
}

impl Location {
    /// What to do about a secret at this location, for the refusal message: for git
    /// history, rotating it and removing it from the repository (or `--allow-findings`);
    /// `None` for files and variables (the caller's `airlock scan --fix` hint applies).
    #[must_use]
    pub fn remedy(&self) -> Option<String> {
        let Location::GitHistory { repo, path, reach, .. } = self else { return None };
        let git = if repo.as_os_str().is_empty() { "git".to_owned() } else { format!("git -C {}", repo.display()) };
        let purge = format!("{git} reflog expire --expire=now --all && {git} gc --prune=now");
        let how = match reach {
            GitReach::Refs => {
                format!("rewrite history without it (e.g. `{git} filter-repo --invert-paths --path {}`, or --replace-text), then `{purge}`", path.display())
            }
            GitReach::Stash => format!("drop the stash entry that holds it (`{git} stash list`, `{git} stash drop`), then `{purge}`"),
            GitReach::Reflog => format!("expire the reflog that still holds it: `{purge}`"),
        };
        Some(format!(
            "the agent can read this with git; rotate the credential (it has been readable), {how}; or pass --allow-findings to start anyway (audited)"
        ))
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

/// Why a finding is listed but does not refuse the run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NotRefused {
    /// The detector is not confident it is a credential (below the refusing confidence).
    LowConfidence,
    /// It is inside a vendored or generated tree (`node_modules`, `.venv`, `target`, …),
    /// named here: third-party test fixtures and build output, not the project's secrets.
    Vendored {
        /// The directory name that makes the tree vendored, e.g. `node_modules`.
        dir: String,
    },
}

impl std::fmt::Display for NotRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotRefused::LowConfidence => f.write_str("low confidence"),
            NotRefused::Vendored { dir } => write!(f, "in a vendored or generated tree ({dir}/)"),
        }
    }
}

/// A finding that is shown but does not refuse the run, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    /// The finding.
    pub finding: Finding,
    /// Why it does not refuse.
    pub reason: NotRefused,
}

/// The whole answer of a workspace preflight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceScan {
    /// Findings that refuse the run (sorted): what [`Detector::scan_workspace`] returns.
    pub refused: Vec<Finding>,
    /// Findings shown but not refusing (sorted).
    pub listed: Vec<Listed>,
    /// Findings dropped because their fingerprint is in the baseline.
    pub baselined: usize,
    /// Git repositories in the workspace whose history was scanned.
    pub repositories: usize,
}

/// What `airlock run` needs from a secret scanner.
pub trait Detector: Send + Sync {
    /// The findings that refuse the run: every file under `root` (hidden and git-ignored
    /// included) and the git history of the repositories in it, minus what
    /// [`Detector::preflight`] only lists or the baseline suppresses.
    fn scan_workspace(&self, root: &Path) -> Result<Vec<Finding>, Error>;

    /// The full answer: refusing findings, listed ones with their reason, the baseline
    /// count. The default treats every [`Detector::scan_workspace`] finding as refusing.
    fn preflight(&self, root: &Path) -> Result<WorkspaceScan, Error> {
        Ok(WorkspaceScan { refused: self.scan_workspace(root)?, ..WorkspaceScan::default() })
    }

    /// The id of a detector that flags `value` of variable `name`, if any.
    fn flag_value(&self, name: &str, value: &[u8]) -> Option<String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(repo: &str, reach: GitReach) -> Location {
        Location::GitHistory {
            repo: PathBuf::from(repo),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            path: PathBuf::from(".env"),
            line: 2,
            reach,
        }
    }

    #[test]
    fn git_history_locations_say_where_and_how_to_remove() {
        assert_eq!(hist("", GitReach::Refs).to_string(), "git history 0123456789ab:.env:2");
        assert_eq!(hist("sub/repo", GitReach::Stash).to_string(), "git stash of sub/repo 0123456789ab:.env:2");
        let refs = hist("", GitReach::Refs).remedy().unwrap();
        assert!(refs.contains("rotate") && refs.contains("filter-repo --invert-paths --path .env") && refs.contains("--allow-findings"), "{refs}");
        let stash = hist("sub/repo", GitReach::Stash).remedy().unwrap();
        assert!(stash.contains("git -C sub/repo stash drop") && stash.contains("gc --prune=now"), "{stash}");
        assert!(hist("", GitReach::Reflog).remedy().unwrap().contains("git reflog expire --expire=now --all"));
        assert_eq!(Location::File { path: ".env".into(), line: 1 }.remedy(), None);
    }

    struct Fixed;
    impl Detector for Fixed {
        fn scan_workspace(&self, _: &Path) -> Result<Vec<Finding>, Error> {
            Ok(vec![Finding { location: Location::Env { name: "X".into() }, detector: "d".into() }])
        }
        fn flag_value(&self, _: &str, _: &[u8]) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_default_preflight_refuses_every_finding() {
        let p = Fixed.preflight(Path::new("/")).unwrap();
        assert_eq!(p.refused.len(), 1);
        assert!(p.listed.is_empty());
        assert_eq!(NotRefused::Vendored { dir: "node_modules".into() }.to_string(), "in a vendored or generated tree (node_modules/)");
    }
}
