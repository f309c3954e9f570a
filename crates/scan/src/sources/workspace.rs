//! A workspace: every file under a directory and the history of every git repository
//! in it, as an agent working there could read them.
//!
//! This module owns combining the file source and the git source over one directory
//! walk (so the repositories cost no second walk). It never interprets findings — which
//! of them should stop an agent is the caller's policy — and never logs file contents.

use std::path::Path;
use std::time::Instant;

use crate::finding::Source;
use crate::sources::files::{display_path, walk_workspace};
use crate::{CleanCache, Error, ScanOptions, ScanReport, Scanner};

impl Scanner {
    /// Scan every file under `root` (hidden and gitignored included) and, for each git
    /// repository inside it (`root` itself, nested ones, submodules, bare ones), every
    /// blob reachable from its references, stash and reflogs.
    ///
    /// Git findings carry `repo` (the repository's directory, as found under `root`),
    /// `commit` and `reach`; their `path` is relative to the repository. A repository
    /// that cannot be opened (a `.git` file pointing nowhere) is counted in
    /// `stats.skipped_unreadable` and skipped; one that opens but cannot be read is an
    /// error. `stats.repositories` counts the repositories scanned.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `root` does not exist; [`Error::Git`] when a repository's
    /// objects cannot be read.
    pub fn scan_workspace(&self, root: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        self.scan_workspace_inner(root, opts, None)
    }

    /// [`Scanner::scan_workspace`] with a [`CleanCache`]: files and blobs the cache knows
    /// to have no finding are not read (counted in `stats.cached`), and those found clean
    /// are added to it. The findings are the same as without the cache. Call
    /// [`CleanCache::save`] afterwards to keep what was learnt.
    ///
    /// # Errors
    /// As [`Scanner::scan_workspace`].
    pub fn scan_workspace_cached(&self, root: &Path, opts: &ScanOptions, cache: &CleanCache) -> Result<ScanReport, Error> {
        self.scan_workspace_inner(root, opts, Some(cache))
    }

    fn scan_workspace_inner(&self, root: &Path, opts: &ScanOptions, cache: Option<&CleanCache>) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let walk = walk_workspace(&[root.to_path_buf()])?;
        let mut report = self.scan_files_cached(&walk.files, opts, Source::File, cache);
        report.stats.skipped_unreadable += walk.unreadable;
        for dir in &walk.repositories {
            let Ok(repo) = gix::open(dir) else {
                report.stats.skipped_unreadable += 1;
                continue;
            };
            let mut history = self.scan_opened_repository(repo, dir, opts, cache)?;
            let shown = display_path(dir);
            for f in &mut history.findings {
                f.repo = Some(shown.clone());
            }
            history.stats.repositories = 1;
            history.stats.elapsed = std::time::Duration::ZERO;
            report.merge(history);
        }
        report.stats.elapsed = start.elapsed();
        Ok(report)
    }
}
