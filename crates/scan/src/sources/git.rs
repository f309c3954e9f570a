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
//! seen are skipped (their blobs were seen earlier). A blob seen before is scanned again
//! only under a path that a different set of path-filtered rules applies to (a copy of a
//! clean `notes.txt` committed as `.netrc`). Each unique blob is then read and scanned
//! once, in parallel. A secret found in several blobs at the same path is
//! reported once, with the oldest commit.
//!
//! A commit the object database does not hold (a shallow clone's boundary, a reflog
//! entry whose commit was pruned) ends that line of the walk; it is not an error.
//! [`find_repositories`] lists the repositories inside a directory tree (nested ones
//! included); [`Scanner::scan_workspace`] finds them during its file walk.
//!
//! Reads the object database, references and reflogs only; never writes to the
//! repository and never runs anything it configures (hooks, filters, fsmonitor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gix::ObjectId;
use rayon::prelude::*;

use crate::cache::CleanCache;
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

/// One blob's findings (with its commit's order), counters, and whether it was clean.
type BlobOutcome = (Vec<(Finding, usize)>, ScanStats, bool);

fn git_err(repo: &Path, e: impl std::fmt::Display) -> Error {
    Error::Git { path: repo.display().to_string(), reason: e.to_string() }
}

impl Scanner {
    /// Scan every unique blob in the history of the repository at (or above) `repo`:
    /// everything reachable from a reference, the stash or a reflog.
    pub fn scan_git_history(&self, repo: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let r = gix::discover(repo).map_err(|e| git_err(repo, e))?;
        self.scan_opened_repository(r, repo, opts, None)
    }

    /// Like [`Scanner::scan_git_history`] for the repository exactly at `dir` (a work tree
    /// with a `.git` directory or file, or a bare repository's directory), without
    /// looking in parent directories.
    pub fn scan_git_repository(&self, dir: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let r = gix::open(dir).map_err(|e| git_err(dir, e))?;
        self.scan_opened_repository(r, dir, opts, None)
    }

    /// Scan the history of `r`. With a cache, commits whose whole ancestry is known clean
    /// are not walked, trees known clean at their path are not descended, blobs known
    /// clean at their path class are not read; what this scan finds clean is recorded.
    pub(crate) fn scan_opened_repository(&self, r: gix::Repository, repo: &Path, opts: &ScanOptions, cache: Option<&CleanCache>) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let commits = commits_parents_first(&r, cache).map_err(|e| git_err(repo, e))?;
        let walked = unique_blobs(self, &r, &commits, cache).map_err(|e| git_err(repo, e))?;
        let blobs = &walked.blobs;
        let ts = r.into_sync();
        let max = opts.max_file_size;
        let progress = crate::report::progress_bar(opts.progress, blobs.len() as u64);
        let results: Vec<BlobOutcome> = blobs
            .par_iter()
            .map_init(
                || ts.to_thread_local(),
                |repo, b| {
                    let mut stats = ScanStats::default();
                    let mut out = Vec::new();
                    let key = cache.map(|c| c.blob_key(self, b.id.as_slice(), &b.path));
                    let mut clean = true;
                    if let (Some(c), Some(k)) = (cache, &key)
                        && c.hit(k)
                    {
                        stats.cached = 1;
                    } else {
                        clean = match repo.find_object(b.id) {
                            Ok(obj) => {
                                let data = &obj.data;
                                if data.len() as u64 > max {
                                    stats.skipped_large = 1;
                                    false
                                } else if looks_binary(data) {
                                    stats.skipped_binary = 1;
                                    true
                                } else {
                                    stats.files_scanned = 1;
                                    stats.bytes_scanned = data.len() as u64;
                                    for mut f in self.scan_data(&b.path, data, Source::Git) {
                                        f.commit = Some(b.commit.to_string());
                                        f.reach = Some(b.reach);
                                        out.push((f, b.order));
                                    }
                                    out.is_empty()
                                }
                            }
                            Err(_) => {
                                stats.skipped_unreadable = 1;
                                false
                            }
                        };
                        if clean && let (Some(c), Some(k)) = (cache, key) {
                            c.record(k);
                        }
                    }
                    if let Some(pb) = &progress {
                        pb.inc(1);
                    }
                    (out, stats, clean)
                },
            )
            .collect();
        if let Some(pb) = progress {
            pb.finish_and_clear();
        }
        let mut stats = ScanStats::default();
        if let Some(c) = cache {
            let clean: Vec<bool> = results.iter().map(|(_, _, clean)| *clean).collect();
            walked.record_clean(c, &commits, &clean);
        }
        // (rule, fingerprint, path) → oldest finding
        let mut best: HashMap<(String, String, String), (Finding, usize)> = HashMap::new();
        for (found, s, _) in results {
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
fn tips(r: &gix::Repository, cache: Option<&CleanCache>) -> Result<Vec<(GitReach, String, ObjectId)>, BoxErr> {
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
        // A commit whose ancestry is known clean needs no walk, and no read to check it.
        if cache.is_some_and(|c| c.hit(&CleanCache::commit_key(id.as_slice()))) {
            continue;
        }
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

/// A commit of the walk: its tree (none when the object database lacks the commit) and
/// its parents.
struct CommitEntry {
    id: ObjectId,
    reach: GitReach,
    tree: Option<ObjectId>,
    parents: Vec<ObjectId>,
}

/// All commits reachable from any tip (see [`tips`]), parents before children, each with
/// the reach of the first tip group that reached it. With a cache, a commit whose whole
/// ancestry is known clean is left out, and so are its ancestors (unless reached otherwise).
fn commits_parents_first(r: &gix::Repository, cache: Option<&CleanCache>) -> Result<Vec<CommitEntry>, BoxErr> {
    let known = |id: &ObjectId| cache.is_some_and(|c| c.hit(&CleanCache::commit_key(id.as_slice())));
    let mut order = Vec::new();
    let mut state: HashMap<ObjectId, bool> = HashMap::new(); // false = on stack, true = done
    for (reach, _, tip) in tips(r, cache)? {
        if state.contains_key(&tip) {
            continue;
        }
        if known(&tip) {
            state.insert(tip, true);
            continue;
        }
        // Iterative post-order DFS: emit a commit after all its parents.
        let mut stack: Vec<(CommitEntry, Vec<ObjectId>)> = Vec::new();
        state.insert(tip, false);
        stack.push(read_commit(r, tip, reach));
        while let Some((entry, pending)) = stack.last_mut() {
            if let Some(p) = pending.pop() {
                if let std::collections::hash_map::Entry::Vacant(slot) = state.entry(p) {
                    if known(&p) {
                        slot.insert(true);
                        continue;
                    }
                    slot.insert(false);
                    let next = read_commit(r, p, entry.reach);
                    stack.push(next);
                }
            } else if let Some((entry, _)) = stack.pop() {
                state.insert(entry.id, true);
                order.push(entry);
            }
        }
    }
    Ok(order)
}

/// A commit's entry and its parents in reverse order (so popping visits the first
/// parent first); no tree and no parents for a commit the object database does not hold
/// (a shallow boundary, a pruned commit).
fn read_commit(r: &gix::Repository, id: ObjectId, reach: GitReach) -> (CommitEntry, Vec<ObjectId>) {
    let mut entry = CommitEntry { id, reach, tree: None, parents: Vec::new() };
    let Ok(c) = r.find_commit(id) else { return (entry, Vec::new()) };
    entry.tree = c.tree_id().ok().map(gix::Id::detach);
    entry.parents = c.parent_ids().map(gix::Id::detach).collect();
    let mut pending = entry.parents.clone();
    pending.reverse();
    (entry, pending)
}

/// One tree as walked at one path prefix: what it holds, to decide after the scan
/// whether it is clean there.
struct TreeNode {
    id: ObjectId,
    /// `""` or `dir/sub/`
    prefix: String,
    deps: Vec<Dep>,
    /// false when a blob or subtree in it was scanned (or walked) at another path only:
    /// then its outcome here is not known and the tree is not recorded.
    certain: bool,
}

/// What a tree's cleanliness depends on.
enum Dep {
    Blob(usize),
    Tree(usize),
}

/// The unique blobs of a walk, and (for the cache) the trees they were found in.
struct Walked {
    blobs: Vec<BlobEntry>,
    trees: Vec<TreeNode>,
    /// per commit of the walk: its root tree's node, `Ok(None)` when the cache knew it
    /// clean, `Err(())` when not known (no tree, or only seen at another path)
    roots: Vec<Result<Option<usize>, ()>>,
}

impl Walked {
    /// Record in `cache` every tree (at its prefix) and every commit whose whole content
    /// (commit: and ancestry) is clean, given which blobs were clean.
    fn record_clean(&self, cache: &CleanCache, commits: &[CommitEntry], blob_clean: &[bool]) {
        // Trees: post-order over the DAG (explicit stack: trees can nest deeply).
        let mut clean: Vec<Option<bool>> = vec![None; self.trees.len()];
        for i in 0..self.trees.len() {
            let mut stack = vec![(i, false)];
            while let Some((n, expanded)) = stack.pop() {
                if clean[n].is_some() {
                    continue;
                }
                let node = &self.trees[n];
                if !expanded {
                    stack.push((n, true));
                    for d in &node.deps {
                        if let Dep::Tree(t) = d
                            && clean[*t].is_none()
                        {
                            stack.push((*t, false));
                        }
                    }
                    continue;
                }
                let ok = node.certain
                    && node.deps.iter().all(|d| match d {
                        Dep::Blob(b) => blob_clean[*b],
                        Dep::Tree(t) => clean[*t] == Some(true),
                    });
                clean[n] = Some(ok);
                if ok {
                    cache.record(cache.tree_key(node.id.as_slice(), &[node.prefix.as_bytes()]));
                }
            }
        }
        // Commits, parents first: clean when the tree is and every parent is (known clean
        // or walked clean). A parent missing from the object database is walked with no tree.
        let mut done: HashMap<ObjectId, bool> = HashMap::new();
        for (c, root) in commits.iter().zip(&self.roots) {
            let tree_ok = match root {
                Ok(None) => true,
                Ok(Some(n)) => clean[*n] == Some(true),
                Err(()) => false,
            };
            let ok = tree_ok && c.parents.iter().all(|p| done.get(p).copied().unwrap_or_else(|| cache.hit(&CleanCache::commit_key(p.as_slice()))));
            done.insert(c.id, ok);
            if ok {
                cache.record(CleanCache::commit_key(c.id.as_slice()));
            }
        }
    }
}

/// Whether `path` is `prefix` followed by `name`.
fn is_path(path: &str, prefix: &str, name: &[u8], suffix: &[u8]) -> bool {
    let p = path.as_bytes();
    p.len() == prefix.len() + name.len() + suffix.len()
        && p.starts_with(prefix.as_bytes())
        && &p[prefix.len()..prefix.len() + name.len()] == name
        && p.ends_with(suffix)
}

/// Whether the same path-filtered rules apply to `a` and `b` (then a blob has the same
/// findings at both).
fn same_path_class(scanner: &Scanner, a: &str, b: &str) -> bool {
    scanner.rules().iter().all(|r| r.paths.is_none() || r.applies_to_path(a) == r.applies_to_path(b))
}

fn unique_blobs(scanner: &Scanner, r: &gix::Repository, commits: &[CommitEntry], cache: Option<&CleanCache>) -> Result<Walked, BoxErr> {
    let mut seen_trees: HashMap<ObjectId, usize> = HashMap::new();
    let mut seen_blobs: HashMap<ObjectId, Vec<usize>> = HashMap::new();
    let mut w = Walked { blobs: Vec::new(), trees: Vec::new(), roots: Vec::with_capacity(commits.len()) };
    for (order, c) in commits.iter().enumerate() {
        // A commit missing from the object database (shallow boundary) has no tree to walk.
        let Some(tree) = c.tree else {
            w.roots.push(Err(()));
            continue;
        };
        let mut stack: Vec<usize> = Vec::new();
        let root = if let Some(&n) = seen_trees.get(&tree) {
            // walked before (a revert, a merge of identical trees)
            if w.trees[n].prefix.is_empty() { Ok(Some(n)) } else { Err(()) }
        } else if cache.is_some_and(|k| k.hit(&k.tree_key(tree.as_slice(), &[]))) {
            Ok(None)
        } else {
            seen_trees.insert(tree, w.trees.len());
            stack.push(w.trees.len());
            w.trees.push(TreeNode { id: tree, prefix: String::new(), deps: Vec::new(), certain: true });
            Ok(Some(w.trees.len() - 1))
        };
        w.roots.push(root);
        while let Some(n) = stack.pop() {
            let tid = w.trees[n].id;
            let prefix = std::mem::take(&mut w.trees[n].prefix);
            let mut deps = Vec::new();
            let mut certain = true;
            let t = r.find_tree(tid)?;
            let decoded = t.decode()?;
            for e in &decoded.entries {
                let name: &[u8] = e.filename;
                // Names are built only for trees and blobs not seen yet: most entries of a
                // changed tree are unchanged.
                if e.mode.is_tree() {
                    let oid = e.oid.to_owned();
                    if let Some(&s) = seen_trees.get(&oid) {
                        if cache.is_some() {
                            if is_path(&w.trees[s].prefix, &prefix, name, b"/") {
                                deps.push(Dep::Tree(s));
                            } else {
                                certain = false;
                            }
                        }
                    } else if cache.is_some_and(|k| k.hit(&k.tree_key(oid.as_slice(), &[prefix.as_bytes(), name, b"/"]))) {
                        // known clean at this path: not descended
                    } else {
                        seen_trees.insert(oid, w.trees.len());
                        deps.push(Dep::Tree(w.trees.len()));
                        stack.push(w.trees.len());
                        w.trees.push(TreeNode { id: oid, prefix: format!("{prefix}{}/", e.filename), deps: Vec::new(), certain: true });
                    }
                } else if e.mode.is_blob() {
                    let oid = e.oid.to_owned();
                    let firsts = seen_blobs.entry(oid).or_default();
                    // Seen at this path, or at a path the same path-filtered rules apply
                    // to: the same outcome. Otherwise (a copy or rename into `.netrc`, …)
                    // it is scanned again under this path.
                    let same = firsts.iter().copied().find(|&b| is_path(&w.blobs[b].path, &prefix, name, b""));
                    let path = || format!("{prefix}{}", e.filename);
                    let known = same.or_else(|| {
                        if firsts.is_empty() {
                            return None;
                        }
                        let p = path();
                        firsts.iter().copied().find(|&b| same_path_class(scanner, &w.blobs[b].path, &p))
                    });
                    if let Some(b) = known {
                        deps.push(Dep::Blob(b));
                    } else {
                        firsts.push(w.blobs.len());
                        deps.push(Dep::Blob(w.blobs.len()));
                        w.blobs.push(BlobEntry { id: oid, path: path(), commit: c.id, reach: c.reach, order });
                    }
                }
            }
            let node = &mut w.trees[n];
            node.prefix = prefix;
            node.deps = deps;
            node.certain = certain;
        }
    }
    Ok(w)
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
/// repository's directory when `path` is its `HEAD` — not inside a `.git` directory below
/// the walk's `root` (the git directory itself, a submodule's under `.git/modules/`: their
/// work trees are the repositories).
pub(crate) fn repository_of(root: &Path, path: &Path, ft: Option<std::fs::FileType>) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = path.parent()?;
    if name == ".git" {
        return Some(parent.to_path_buf());
    }
    let below = parent.strip_prefix(root).unwrap_or(parent);
    if below.components().any(|c| c.as_os_str() == ".git") {
        return None;
    }
    if name == "HEAD" && ft.is_some_and(|t| t.is_file()) && parent.join("objects").is_dir() && parent.join("refs").is_dir() {
        return Some(parent.to_path_buf());
    }
    None
}
