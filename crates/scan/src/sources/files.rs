//! Files under the given paths — including gitignored and hidden ones.
//!
//! The walk uses the `ignore` crate with every ignore rule off (an agent can read a
//! gitignored `.env` just as well as a tracked file). A repository's `.git` directory is
//! walked too — `config` (a token in a remote URL, actions/checkout's persisted
//! `http.<url>.extraheader`), hooks, `info/`, logs are files the agent can read — except
//! its object database (`objects/` of a directory holding `HEAD` and `refs/`): history
//! is the git source's, which reads those objects decompressed. Symlinks to regular
//! files are scanned under the link's path; directory symlinks are not followed.
//!
//! Files are read into a per-thread reusable buffer rather than memory-mapped: the
//! workspace forbids `unsafe` code, and a mapped file that another process truncates
//! while we scan it raises SIGBUS — a real risk when scanning a live workspace. Reads
//! of files under the size cap (10 MiB) cost little next to matching.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use crate::cache::CleanCache;
use crate::finding::{Finding, Source};
use crate::sources::{BINARY_SNIFF, looks_binary};
use crate::{Error, ScanOptions, ScanReport, ScanStats, Scanner, sort_findings};

/// A file to scan: where to read it, and the path to report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Path to open.
    pub fs_path: PathBuf,
    /// Path to report (forward slashes, no leading `./`).
    pub display: String,
}

impl FileEntry {
    /// An entry whose reported path is derived from `p`.
    #[must_use]
    pub fn new(p: PathBuf) -> Self {
        let display = display_path(&p);
        Self { fs_path: p, display }
    }
}

/// Render a path for reports: forward slashes, no leading `./`.
#[must_use]
pub fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let mut t = s.as_str();
    while let Some(rest) = t.strip_prefix("./") {
        t = rest;
    }
    if t.is_empty() { ".".to_owned() } else { t.to_owned() }
}

/// Enumerate every regular file under `roots` (hidden and ignored included, `.git`
/// directories too but not a repository's `objects/`), sorted. Returns the files and how many entries could not be
/// read.
pub fn walk(roots: &[PathBuf]) -> Result<(Vec<FileEntry>, u64), Error> {
    let w = walk_workspace(roots)?;
    Ok((w.files, w.unreadable))
}

/// What one walk of a directory tree found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Walk {
    /// Every regular file (hidden and ignored included, `.git` directories too but not a
    /// repository's `objects/`), sorted.
    pub files: Vec<FileEntry>,
    /// Entries that could not be read.
    pub unreadable: u64,
    /// Git repositories found on the way (see [`crate::sources::git::find_repositories`]),
    /// sorted.
    pub repositories: Vec<PathBuf>,
}

/// [`walk`], also noting the git repositories in the tree (a directory with a `.git`
/// directory or file, or a bare repository), in the same single pass.
pub fn walk_workspace(roots: &[PathBuf]) -> Result<Walk, Error> {
    let mut out = Vec::new();
    let mut unreadable = 0u64;
    let found: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    for root in roots {
        if std::fs::symlink_metadata(root).is_err() {
            return Err(Error::NotFound { path: root.display().to_string() });
        }
        let seen = Arc::clone(&found);
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .ignore(false)
            .git_ignore(false)
            .git_exclude(false)
            .git_global(false)
            .parents(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(move |e| {
                let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                let git_dir = is_dir && e.file_name() == ".git";
                if git_dir && let Some(parent) = e.path().parent() {
                    seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(parent.to_path_buf());
                }
                !(is_dir && e.file_name() == "objects" && e.path().parent().is_some_and(is_git_dir))
            })
            .build();
        let mut repos = Vec::new();
        for entry in walker {
            let Ok(entry) = entry else {
                unreadable += 1;
                continue;
            };
            let Some(ft) = entry.file_type() else { continue };
            let is_file = if ft.is_symlink() { std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) } else { ft.is_file() };
            if is_file {
                if let Some(repo) = crate::sources::git::repository_of(root, entry.path(), Some(ft)) {
                    repos.push(repo);
                }
                out.push(FileEntry::new(entry.into_path()));
            }
        }
        found.lock().unwrap_or_else(std::sync::PoisonError::into_inner).append(&mut repos);
    }
    out.sort();
    out.dedup();
    let mut repositories = std::mem::take(&mut *found.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    repositories.sort();
    repositories.dedup();
    Ok(Walk { files: out, unreadable, repositories })
}

/// Whether `dir` looks like a git directory (`HEAD` and `refs/` in it).
fn is_git_dir(dir: &Path) -> bool {
    dir.join("HEAD").is_file() && dir.join("refs").is_dir()
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Outcome of reading and scanning one input.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub findings: Vec<Finding>,
    pub stats: ScanStats,
}

impl Outcome {
    fn merge(mut self, mut o: Self) -> Self {
        self.findings.append(&mut o.findings);
        self.stats.merge(&o.stats);
        self
    }
}

impl Scanner {
    /// Scan every file under `paths` (files or directories), hidden and gitignored
    /// files included.
    pub fn scan_paths(&self, paths: &[PathBuf], opts: &ScanOptions) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let (files, unreadable) = walk(paths)?;
        let mut report = self.scan_files(&files, opts, Source::File);
        report.stats.skipped_unreadable += unreadable;
        report.stats.elapsed = start.elapsed();
        Ok(report)
    }

    /// Scan an explicit list of files, reporting them as `source`.
    #[must_use]
    pub fn scan_files(&self, files: &[FileEntry], opts: &ScanOptions, source: Source) -> ScanReport {
        self.scan_files_cached(files, opts, source, None)
    }

    /// [`Scanner::scan_files`], skipping files `cache` knows clean and recording the new
    /// clean ones (see [`crate::cache`]).
    pub(crate) fn scan_files_cached(&self, files: &[FileEntry], opts: &ScanOptions, source: Source, cache: Option<&CleanCache>) -> ScanReport {
        let start = Instant::now();
        let progress = crate::report::progress_bar(opts.progress, files.len() as u64);
        let done = AtomicU64::new(0);
        let outcome = files
            .par_iter()
            .map(|f| {
                let o = self.scan_one_file(f, opts.max_file_size, source, cache);
                if let Some(pb) = &progress {
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_multiple_of(64) {
                        pb.set_position(n);
                    }
                }
                o
            })
            .reduce(Outcome::default, Outcome::merge);
        if let Some(pb) = progress {
            pb.finish_and_clear();
        }
        let mut findings = outcome.findings;
        sort_findings(&mut findings);
        let mut stats = outcome.stats;
        stats.elapsed = start.elapsed();
        ScanReport { findings, stats }
    }

    fn scan_one_file(&self, f: &FileEntry, max: u64, source: Source, cache: Option<&CleanCache>) -> Outcome {
        let mut o = Outcome::default();
        // A hit needs only a stat; the key recorded after a scan comes from fstat of the
        // opened file before it was read (see the soundness argument in `cache`).
        if let Some(c) = cache
            && let Ok(meta) = std::fs::metadata(&f.fs_path)
            && let Some(key) = c.file_key(&f.display, &meta)
            && c.hit(&key)
        {
            o.stats.cached = 1;
            return o;
        }
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let (read, meta) = read_capped(&f.fs_path, max, &mut buf);
            let clean = match read {
                Read_::Ok => {
                    o.stats.files_scanned = 1;
                    o.stats.bytes_scanned = buf.len() as u64;
                    o.findings = self.scan_data(&f.display, &buf, source);
                    o.findings.is_empty()
                }
                Read_::Binary => {
                    o.stats.skipped_binary = 1;
                    true
                }
                Read_::Large => {
                    o.stats.skipped_large = 1;
                    false
                }
                Read_::Unreadable => {
                    o.stats.skipped_unreadable = 1;
                    false
                }
            };
            if clean
                && let (Some(c), Some(meta)) = (cache, meta)
                && let Some(key) = c.file_key(&f.display, &meta)
            {
                c.record(key);
            }
            // Don't let one large file pin 10 MiB per thread forever.
            if buf.capacity() > 1 << 20 {
                *buf = Vec::new();
            } else {
                buf.clear();
            }
        });
        o
    }
}

enum Read_ {
    Ok,
    Binary,
    Large,
    Unreadable,
}

/// Read `path` into `buf` unless it is binary or larger than `max`; also the opened
/// file's metadata, taken before reading.
fn read_capped(path: &Path, max: u64, buf: &mut Vec<u8>) -> (Read_, Option<std::fs::Metadata>) {
    buf.clear();
    let Ok(file) = File::open(path) else { return (Read_::Unreadable, None) };
    let Ok(meta) = file.metadata() else { return (Read_::Unreadable, None) };
    let read = read_open(file, &meta, max, buf);
    (read, Some(meta))
}

fn read_open(file: File, meta: &std::fs::Metadata, max: u64, buf: &mut Vec<u8>) -> Read_ {
    if meta.len() > max {
        return Read_::Large;
    }
    let mut file = file.take(max + 1);
    // Sniff the head first so binaries are not read whole.
    let mut head = [0u8; BINARY_SNIFF];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Read_::Unreadable,
        }
    }
    if looks_binary(&head[..n]) {
        return Read_::Binary;
    }
    buf.reserve(meta.len() as usize + 1);
    buf.extend_from_slice(&head[..n]);
    if n == head.len() && file.read_to_end(buf).is_err() {
        return Read_::Unreadable;
    }
    if buf.len() as u64 > max {
        return Read_::Large;
    }
    Read_::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_paths() {
        assert_eq!(display_path(Path::new("./a/b")), "a/b");
        assert_eq!(display_path(Path::new("././a")), "a");
        assert_eq!(display_path(Path::new("/x/y")), "/x/y");
        assert_eq!(display_path(Path::new(".")), ".");
    }
}
