//! Git history: every unique blob reachable from any reference, scanned once.
//!
//! Commits reachable from all references (and `HEAD`) are ordered parents-first
//! (a topological order: the oldest commit comes first). Walking each commit's tree in
//! that order, the first commit in which a blob id appears is the commit that
//! introduced it; trees already seen are skipped (their blobs were seen earlier).
//! Each unique blob is then read and scanned once, in parallel. A secret found in
//! several blobs at the same path is reported once, with the oldest commit.
//!
//! Reads the object database only; never writes to the repository.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use gix::ObjectId;
use rayon::prelude::*;

use crate::finding::{Finding, Source};
use crate::sources::looks_binary;
use crate::{Error, ScanOptions, ScanReport, ScanStats, Scanner, sort_findings};

/// A blob to scan: its id, the path it first appeared at, and the introducing commit.
struct BlobEntry {
    id: ObjectId,
    path: String,
    commit: ObjectId,
    /// position of the commit in parents-first order (smaller = older)
    order: usize,
}

fn git_err(repo: &Path, e: impl std::fmt::Display) -> Error {
    Error::Git { path: repo.display().to_string(), reason: e.to_string() }
}

impl Scanner {
    /// Scan every unique blob in the history of the repository at (or above) `repo`.
    pub fn scan_git_history(&self, repo: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let r = gix::discover(repo).map_err(|e| git_err(repo, e))?;
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

/// All commits reachable from any reference or HEAD, parents before children.
fn commits_parents_first(r: &gix::Repository) -> Result<Vec<ObjectId>, Box<dyn std::error::Error + Send + Sync>> {
    let mut tips: Vec<(String, ObjectId)> = Vec::new();
    if let Ok(id) = r.head_id() {
        tips.push(("HEAD".to_owned(), id.detach()));
    }
    let platform = r.references()?;
    for reference in platform.all()? {
        let Ok(mut reference) = reference else { continue };
        let name = reference.name().as_bstr().to_string();
        // Tags may point at trees or blobs; only commits start a walk.
        if let Ok(c) = reference.peel_to_commit() {
            tips.push((name, c.id));
        }
    }
    tips.sort();
    let mut order = Vec::new();
    let mut state: HashMap<ObjectId, bool> = HashMap::new(); // false = on stack, true = done
    for (_, tip) in tips {
        if state.contains_key(&tip) {
            continue;
        }
        // Iterative post-order DFS: emit a commit after all its parents.
        let mut stack: Vec<(ObjectId, Vec<ObjectId>)> = Vec::new();
        state.insert(tip, false);
        stack.push((tip, parents(r, tip)?));
        while let Some((id, pending)) = stack.last_mut() {
            if let Some(p) = pending.pop() {
                if let std::collections::hash_map::Entry::Vacant(slot) = state.entry(p) {
                    slot.insert(false);
                    let ps = parents(r, p)?;
                    stack.push((p, ps));
                }
            } else {
                let id = *id;
                state.insert(id, true);
                order.push(id);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// Parents in reverse order (so popping visits the first parent first).
fn parents(r: &gix::Repository, id: ObjectId) -> Result<Vec<ObjectId>, Box<dyn std::error::Error + Send + Sync>> {
    let c = r.find_commit(id)?;
    let mut ps: Vec<ObjectId> = c.parent_ids().map(gix::Id::detach).collect();
    ps.reverse();
    Ok(ps)
}

fn unique_blobs(
    r: &gix::Repository,
    commits: &[ObjectId],
) -> Result<Vec<BlobEntry>, Box<dyn std::error::Error + Send + Sync>> {
    let mut seen_trees: HashSet<ObjectId> = HashSet::new();
    let mut seen_blobs: HashSet<ObjectId> = HashSet::new();
    let mut out = Vec::new();
    for (order, &cid) in commits.iter().enumerate() {
        let tree = r.find_commit(cid)?.tree_id()?.detach();
        let mut stack: Vec<(ObjectId, String)> = vec![(tree, String::new())];
        while let Some((tid, prefix)) = stack.pop() {
            if !seen_trees.insert(tid) {
                continue;
            }
            let t = r.find_tree(tid)?;
            let decoded = t.decode()?;
            for e in &decoded.entries {
                let name = format!("{prefix}{}", e.filename);
                if e.mode.is_tree() {
                    stack.push((e.oid.to_owned(), format!("{name}/")));
                } else if e.mode.is_blob() && seen_blobs.insert(e.oid.to_owned()) {
                    out.push(BlobEntry { id: e.oid.to_owned(), path: name, commit: cid, order });
                }
            }
        }
    }
    Ok(out)
}
