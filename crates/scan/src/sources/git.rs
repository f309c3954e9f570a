//! Git history: every unique blob an agent could read with `git log -p --all`, `git
//! stash show -p` or `git reflog -p`, scanned once.
//!
//! The walk starts from every reference and `HEAD` (branches, tags, remotes, notes,
//! `refs/stash`) and from every entry of every reflog (`logs/**`, including the stash's
//! older entries and what a `reset --hard`, an amend or a deleted branch left behind).
//! Commits are ordered parents-first (a topological order: the oldest commit comes
//! first), those reachable from a reference before those reachable only from the stash,
//! before those reachable only from a reflog; each commit remembers which of the three
//! ([`GitReach`]) first reached it. Walking each commit's tree in that order, the first
//! commit in which a blob id appears is the commit that introduced it; trees already
//! seen are skipped (their blobs were seen earlier). Each unique blob is then read and
//! scanned once, in parallel. A secret found in several blobs at the same path is
//! reported once, with the oldest commit.
//!
//! A commit the object database does not hold (a shallow clone's boundary, a reflog
//! entry whose commit was pruned) ends that line of the walk; it is not an error.
//! [`find_repositories`] lists the repositories inside a directory tree (nested ones
//! included); [`Scanner::scan_workspace`] finds them during its file walk.
//!
//! Reads the object database, references and reflogs only; never writes to the
//! repository and never runs anything it configures (hooks, filters, fsmonitor).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use gix::ObjectId;
use rayon::prelude::*;

use crate::finding::{Finding, GitReach, Source};
use crate::sources::looks_binary;
use crate::{Error, ScanOptions, ScanReport, ScanStats, Scanner, sort_findings};

/// A blob to scan: its id, the path it first appeared at, and the introducing commit.
struct BlobEntry {
    id: ObjectId,
    path: String,
    commit: ObjectId,
    reach: GitReach,
    /// position of the commit in parents-first order (smaller = older)
    order: usize,
}

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

fn git_err(repo: &Path, e: impl std::fmt::Display) -> Error {
    Error::Git { path: repo.display().to_string(), reason: e.to_string() }
}

impl Scanner {
    /// Scan every unique blob in the history of the repository at (or above) `repo`:
    /// everything reachable from a reference, the stash or a reflog.
    pub fn scan_git_history(&self, repo: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let r = gix::discover(repo).map_err(|e| git_err(repo, e))?;
        self.scan_opened_repository(r, repo, opts)
    }

    /// Like [`Scanner::scan_git_history`] for the repository exactly at `dir` (a work tree
    /// with a `.git` directory or file, or a bare repository's directory), without
    /// looking in parent directories.
    pub fn scan_git_repository(&self, dir: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let r = gix::open(dir).map_err(|e| git_err(dir, e))?;
        self.scan_opened_repository(r, dir, opts)
    }

    pub(crate) fn scan_opened_repository(
        &self,
        r: gix::Repository, repo: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let commits = commits_parents_first(&r).map_err(|e| git_err(repo, e))?;
        let blobs = unique_blobs(&r, &commits).map_err(|e| git_err(repo, e))?;
        let ts = r.into_sync();
        let max = opts.max_file_size;
        let progress = crate::report::progress_bar(opts.progress, blobs.len() as u64);
        let results: Vec<(Vec<(Finding, usize)>, ScanStats)> = blobs
            .par_iter()
            .map_init(
                || ts.to_thread_local(),
                |repo, b| {
                    let mut stats = ScanStats::default();
                    let mut out = Vec::new();
                    match repo.find_object(b.id) {
                        Ok(obj) => {
                            let data = &obj.data;
                            if data.len() as u64 > max {
                                stats.skipped_large = 1;
                            } else if looks_binary(data) {
                                stats.skipped_binary = 1;
                            } else {
                                stats.files_scanned = 1;
                                stats.bytes_scanned = data.len() as u64;
                                for mut f in self.scan_data(&b.path, data, Source::Git) {
                                    f.commit = Some(b.commit.to_string());
                                    f.reach = Some(b.reach);
                                    out.push((f, b.order));
                                }
                            }
                        }
                        Err(_) => stats.skipped_unreadable = 1,
                    }
                    if let Some(pb) = &progress {
                        pb.inc(1);
                    }
                    (out, stats)
                },
            )
            .collect();
        if let Some(pb) = progress {
            pb.finish_and_clear();
        }
        let mut stats = ScanStats::default();
        // (rule, fingerprint, path) → oldest finding
        let mut best: HashMap<(String, String, String), (Finding, usize)> = HashMap::new();
        for (found, s) in results {
            stats.merge(&s);
            for (f, order) in found {
                let key = (f.rule.clone(), f.fingerprint.clone(), f.path.clone());
                match best.get(&key) {
                    Some((_, o)) if *o <= order => {}
                    _ => {
                        best.insert(key, (f, order));
                    }
                }
            }
        }
        let mut findings: Vec<Finding> = best.into_values().map(|(f, _)| f).collect();
        sort_findings(&mut findings);
        stats.elapsed = start.elapsed();
        Ok(ScanReport { findings, stats })
    }
}

/// Where to start the walk: every reference and `HEAD` ([`GitReach::Refs`]), the stash's
/// reflog ([`GitReach::Stash`]) and every other reflog entry ([`GitReach::Reflog`]), in
/// that order (each group sorted, for determinism).
fn tips(r: &gix::Repository) -> Result<Vec<(GitReach, String, ObjectId)>, BoxErr> {
    let mut tips: Vec<(GitReach, String, ObjectId)> = Vec::new();
    if let Ok(id) = r.head_id() {
        tips.push((GitReach::Refs, "HEAD".to_owned(), id.detach()));
    }
    let platform = r.references()?;
    for reference in platform.all()? {
        let Ok(mut reference) = reference else { continue };
        let name = reference.name().as_bstr().to_string();
        // Tags may point at trees or blobs; only commits start a walk.
        if let Ok(c) = reference.peel_to_commit() {
            let reach = if name == "refs/stash" { GitReach::Stash } else { GitReach::Refs };
            tips.push((reach, name, c.id));
        }
    }
    for (reach, name, id) in reflog_entries(r) {
        if r.find_commit(id).is_ok() {
            tips.push((reach, name, id));
        }
    }
    tips.sort();
    tips.dedup();
    Ok(tips)
}

/// Every object id named by a reflog line (old and new side) under the repository's
/// `logs/` (and each linked worktree's), as (reach, log name, id). Unreadable or
/// malformed logs are skipped: a reflog is a convenience of git's, not a promise.
fn reflog_entries(r: &gix::Repository) -> Vec<(GitReach, String, ObjectId)> {
    let common = r.common_dir();
    let mut roots = vec![common.join("logs")];
    if let Ok(rd) = std::fs::read_dir(common.join("worktrees")) {
        roots.extend(rd.flatten().map(|e| e.path().join("logs")));
    }
    let mut out = Vec::new();
    for root in roots {
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(p);
                    continue;
                }
                if !ft.is_file() {
                    continue;
                }
                let name = p.strip_prefix(&root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
                let reach = if name == "refs/stash" { GitReach::Stash } else { GitReach::Reflog };
                let Ok(bytes) = std::fs::read(&p) else { continue };
                for line in gix::refs::file::log::iter::forward(&bytes).flatten() {
                    for id in [line.previous_oid(), line.new_oid()] {
                        if !id.is_null() {
                            out.push((reach, name.clone(), id));
                        }
                    }
                }
            }
        }
    }
    out
}

/// All commits reachable from any tip (see [`tips`]), parents before children, each with
/// the reach of the first tip group that reached it.
fn commits_parents_first(r: &gix::Repository) -> Result<Vec<(ObjectId, GitReach)>, BoxErr> {
    let mut order = Vec::new();
    let mut state: HashMap<ObjectId, bool> = HashMap::new(); // false = on stack, true = done
    for (reach, _, tip) in tips(r)? {
        if state.contains_key(&tip) {
            continue;
        }
        // Iterative post-order DFS: emit a commit after all its parents.
        let mut stack: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
        state.insert(tip, false);
        stack.push((tip, parents(r, tip)));
        while let Some((id, pending)) = stack.last_mut() {
            if let Some(p) = pending.pop() {
                if let std::collections::hash_map::Entry::Vacant(slot) = state.entry(p) {
                    slot.insert(false);
                    let ps = parents(r, p);
                    stack.push((p, ps));
                }
            } else {
                let id = *id;
                state.insert(id, true);
                order.push((id, reach));
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// Parents in reverse order (so popping visits the first parent first); none for a
/// commit the object database does not hold (a shallow boundary, a pruned commit).
fn parents(r: &gix::Repository, id: ObjectId) -> Vec<ObjectId> {
    let Ok(c) = r.find_commit(id) else { return Vec::new() };
    let mut ps: Vec<ObjectId> = c.parent_ids().map(gix::Id::detach).collect();
    ps.reverse();
    ps
}

fn unique_blobs(r: &gix::Repository, commits: &[(ObjectId, GitReach)]) -> Result<Vec<BlobEntry>, BoxErr> {
    let mut seen_trees: HashSet<ObjectId> = HashSet::new();
    let mut seen_blobs: HashSet<ObjectId> = HashSet::new();
    let mut out = Vec::new();
    for (order, &(cid, reach)) in commits.iter().enumerate() {
        // A commit missing from the object database (shallow boundary) has no tree to walk.
        let Ok(commit) = r.find_commit(cid) else { continue };
        let tree = commit.tree_id()?.detach();
        let mut stack: Vec<(ObjectId, String)> = vec![(tree, String::new())];
        while let Some((tid, prefix)) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            let t = r.find_tree(tid)?;
            let decoded = t.decode()?;
            for e in &decoded.entries {
                // Names are built only for trees and blobs not seen yet: most entries of a
                // changed tree are unchanged.
                if e.mode.is_tree() {
                    if !seen_trees.contains(e.oid) {
                        stack.push((e.oid.to_owned(), format!("{prefix}{}/", e.filename)));
                    }
                } else if e.mode.is_blob() && seen_blobs.insert(e.oid.to_owned()) {
                    let path = format!("{prefix}{}", e.filename);
                    out.push(BlobEntry { id: e.oid.to_owned(), path, commit: cid, reach, order });
                }
            }
        }
    }
    Ok(out)
}

/// The git repositories inside `root` (nested ones included): each directory holding a
/// `.git` directory or file (a work tree, a submodule, a linked worktree), and each
/// bare repository (a directory with `HEAD`, `objects/` and `refs/`). Sorted; the walk
/// never descends into a `.git` directory and does not follow directory symlinks.
///
/// # Errors
/// [`Error::NotFound`] when `root` does not exist.
pub fn find_repositories(root: &Path) -> Result<Vec<PathBuf>, Error> {
    Ok(crate::sources::files::walk_workspace(&[root.to_path_buf()])?.repositories)
}

/// The repository a walked entry reveals, if any: the parent of a `.git` file, or a bare
/// repository's directory when `path` is its `HEAD`.
pub(crate) fn repository_of(path: &Path, ft: Option<std::fs::FileType>) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = path.parent()?;
    if name == ".git" {
        return Some(parent.to_path_buf());
    }
    if name == "HEAD" && ft.is_some_and(|t| t.is_file()) && parent.join("objects").is_dir() && parent.join("refs").is_dir() {
        return Some(parent.to_path_buf());
    }
    None
}
