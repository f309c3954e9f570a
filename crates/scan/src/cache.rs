//! The clean cache: inputs already scanned with no finding, so a repeated workspace scan
//! (`airlock run`'s preflight) reads and matches only what is new.
//!
//! This module owns the cache's keys, its soundness argument and its file. It never
//! holds a secret, a path or file contents: only 16-byte keys of inputs that produced
//! **no finding at all** (not even a low-confidence or vendored one). An input with any
//! finding is never recorded, so it is rescanned every time and still reported.
//!
//! # Keys
//! Every key is the first 16 bytes of SHA-256 over a domain tag and:
//! * **git commit**: its id, recorded when the commit and every commit reachable from it
//!   are clean: their trees (below) are clean and none of them lacks a parent in the
//!   object database (a shallow boundary may be deepened later). The history walk stops
//!   at such a commit. Commits are content-addressed like blobs, and a commit's id fixes
//!   its parents' ids and its tree's id, so the whole ancestry under it never changes.
//! * **git tree**: its id and the path prefix it was found at (`""` for a commit's root,
//!   `dir/sub/` below), recorded when every blob under it, at the path it has there, is
//!   clean. The tree id fixes every name and blob id below it, so with the prefix it fixes
//!   every (blob, path) pair. Such a tree is not descended.
//! * **git blob**: the blob id and the *path class* of the path it is scanned under —
//!   which of the rules that have a `paths` filter apply to it (the path is the only
//!   input of the matcher besides the bytes; see [`crate::engine`]). A blob id names one
//!   content for ever (git objects are content-addressed), so "this blob, under these
//!   rules, at a path of this class, has no finding" stays true. Different content under
//!   the same id needs a SHA-1 collision, which needs an attacker who controls *both*
//!   contents, or a forged object file, whose content its writer already knows — neither
//!   hides a credential someone else put in the repository.
//! * **working-tree file**: its reported path and `(device, inode, size, mtime, ctime)`
//!   as `stat` gives them (Unix only). An agent can write the workspace and set a file's
//!   mtime (`touch -d`, `utimensat`), but not its **ctime**: the kernel sets it to the
//!   current time on every write, truncate, chmod, rename, link or `utimensat`, and no
//!   system call sets it to a chosen value (only changing the system clock, which needs
//!   `CAP_SYS_TIME`, or writing the block device, which needs root). So a file whose
//!   content changed since it was recorded has a ctime that differs from the recorded
//!   one. Two precautions close the remaining gaps: (1) *racy entries* — timestamps have
//!   a clock-tick granularity, so a write in the same tick as our read could leave the
//!   ctime unchanged; a file is recorded only if its ctime is more than [`RACY_MARGIN`]
//!   before the scan started (git's "racily clean" rule), so any later write stamps a
//!   later ctime; (2) the key is taken from `fstat` of the opened file *before* it is
//!   read, so a change during the read also stamps a ctime that never matches the key.
//!   The device and inode tell apart a replaced file (delete and recreate gives a new
//!   ctime anyway); the path is in the key because path-filtered rules depend on it.
//!   What this does not cover: a filesystem whose ctime is not kept by the local kernel
//!   (a FUSE or network filesystem served by someone who wants to hide a change), and a
//!   process that keeps a shared writable mapping of a file dirty across scans (writes to
//!   an already dirty page do not update the times) — such a process writes only what it
//!   already knows.
//!
//! Binary files (a NUL in the first 8 KiB) are recorded like clean ones: their outcome
//! (no finding) depends on the same content. Files over the size cap and unreadable
//! inputs are never recorded.
//!
//! # Fingerprint
//! The cache holds a fingerprint of what decides the outcome: a hash of the engine's
//! sources at build time, the crate version, and every rule field that matters (id,
//! keywords, pattern, checksum, confidence, entropy floor, paths, allow-lists, tags, the
//! shared stop-list). A cache with another fingerprint is dropped whole. The size cap
//! ([`crate::ScanOptions::max_file_size`]) is not part of it: a recorded input was scanned
//! whole and had no finding, which holds under any cap.
//!
//! # File
//! `<dir>/`[`CACHE_FILE`]: the magic `AIRLOCK-CLEAN-1\n`, the 32-byte fingerprint, a
//! little-endian u64 count, that many 16-byte keys sorted ascending without duplicates,
//! and a CRC-32 of everything before it. Anything else — a short file, a bad magic,
//! fingerprint, order or checksum, an unreadable file — reads as an empty cache (every
//! input is scanned), never as an error. It is written to a temporary file in the same
//! directory (mode 0600) and renamed over the old one, and only when the scan added
//! keys. Over [`MAX_ENTRIES`] keys, only the keys seen in the latest scan are kept.
//! The directory must be one the scanned agent can neither read nor write (airlock's
//! state directory): a writable cache would let it mark anything clean.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::{Error, Scanner};

mod engine_hash {
    include!(concat!(env!("OUT_DIR"), "/engine_hash.rs"));
}

/// The cache file's name inside the directory given to [`CleanCache::open`].
pub const CACHE_FILE: &str = "scan-clean-cache";

/// Keys kept at most; beyond, only the latest scan's keys are written.
pub const MAX_ENTRIES: usize = 1 << 20;

/// A file whose ctime is not this much older than the scan's start is not recorded.
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

const MAGIC: &[u8; 16] = b"AIRLOCK-CLEAN-1\n";
const HEADER: usize = 16 + 32 + 8;

/// One cache key (see the module docs).
pub(crate) type Key = [u8; 16];

/// Inputs known to have no finding under one scanner's rules; see the module docs.
#[derive(Debug)]
pub struct CleanCache {
    file: Option<PathBuf>,
    fingerprint: [u8; 32],
    /// Keys read from the file, sorted.
    known: Vec<Key>,
    /// One bit per known key: hit by the current scan.
    hits: Vec<AtomicU64>,
    /// Keys recorded by the current scan that were not known.
    fresh: Mutex<Vec<Key>>,
    new: AtomicU64,
    /// Rules with a `paths` filter (their indices), which make up a path's class.
    path_rules: Vec<usize>,
    /// Files whose ctime is later than this are not recorded.
    cutoff: Duration,
}

impl CleanCache {
    /// The cache stored in `dir` for `scanner`'s rules. Never fails: a missing,
    /// unreadable, corrupt or foreign-fingerprint file is an empty cache. Open it right
    /// before the scan: files changed less than [`RACY_MARGIN`] before this call are not
    /// recorded.
    #[must_use]
    pub fn open(dir: &Path, scanner: &Scanner) -> Self {
        let mut c = Self::in_memory(scanner);
        let file = dir.join(CACHE_FILE);
        if let Ok(bytes) = std::fs::read(&file) {
            c.known = parse(&bytes, &c.fingerprint).unwrap_or_default();
            c.hits = (0..c.known.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        }
        c.file = Some(file);
        c
    }

    /// An empty cache that is never written: what [`Scanner::scan_workspace_cached`] learns
    /// lasts only as long as the value.
    #[must_use]
    pub fn in_memory(scanner: &Scanner) -> Self {
        let path_rules = scanner.rules().iter().enumerate().filter(|(_, r)| r.paths.is_some()).map(|(i, _)| i).collect();
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        Self {
            file: None,
            fingerprint: fingerprint(scanner),
            known: Vec::new(),
            hits: Vec::new(),
            fresh: Mutex::new(Vec::new()),
            new: AtomicU64::new(0),
            path_rules,
            cutoff: now.saturating_sub(RACY_MARGIN),
        }
    }

    /// Keys read from the file.
    #[must_use]
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether the file held no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Clean inputs recorded by scans since the cache was opened that it did not know.
    #[must_use]
    pub fn added(&self) -> u64 {
        self.new.load(Ordering::Relaxed)
    }

    /// Write the cache back when a scan added keys: the known keys plus the new ones
    /// (only the latest scan's keys beyond [`MAX_ENTRIES`]), atomically, mode 0600.
    /// Returns whether it wrote. Failing to write only costs time on the next scan.
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary file cannot be written or renamed.
    pub fn save(&self) -> Result<bool, Error> {
        let Some(file) = &self.file else { return Ok(false) };
        if self.added() == 0 {
            return Ok(false);
        }
        let mut fresh = std::mem::take(&mut *self.lock_fresh());
        fresh.sort_unstable();
        fresh.dedup();
        let mut keys = if self.known.len() + fresh.len() > MAX_ENTRIES {
            // Too many: keep what the latest scan used.
            let used = self.known.iter().enumerate().filter(|(i, _)| self.hits[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0);
            let mut keys: Vec<Key> = used.map(|(_, k)| *k).collect();
            keys.append(&mut fresh);
            keys.sort_unstable();
            keys
        } else {
            let mut all = Vec::with_capacity(self.known.len() + fresh.len());
            all.extend_from_slice(&self.known);
            all.append(&mut fresh);
            all.sort_unstable();
            all.dedup();
            all
        };
        keys.truncate(MAX_ENTRIES);
        let mut out = Vec::with_capacity(HEADER + keys.len() * 16 + 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in &keys {
            out.extend_from_slice(k);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        write_atomically(file, &out)?;
        Ok(true)
    }

    /// Whether `key` is known clean; a hit is remembered for [`CleanCache::save`].
    pub(crate) fn hit(&self, key: &Key) -> bool {
        match self.known.binary_search(key) {
            Ok(i) => {
                self.hits[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    /// Record `key` as clean.
    pub(crate) fn record(&self, key: Key) {
        if self.known.binary_search(&key).is_err() {
            self.new.fetch_add(1, Ordering::Relaxed);
            self.lock_fresh().push(key);
        }
    }

    fn lock_fresh(&self) -> std::sync::MutexGuard<'_, Vec<Key>> {
        self.fresh.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key of commit `id` whose whole ancestry (every commit reachable from it, and
    /// their trees) is clean. Rule-independent by itself: the file's fingerprint covers
    /// the rules.
    pub(crate) fn commit_key(id: &[u8]) -> Key {
        let mut h = Sha256::new();
        h.update(b"commit\0");
        h.update(id);
        truncate(h)
    }

    /// The key of git tree `id` whose every blob, at the path it has under the prefix
    /// made of `prefix` (concatenated; `""` or `dir/sub/`), is clean.
    pub(crate) fn tree_key(&self, id: &[u8], prefix: &[&[u8]]) -> Key {
        let mut h = Sha256::new();
        h.update(b"tree\0");
        h.update(id);
        h.update([0]);
        for p in prefix {
            h.update(p);
        }
        truncate(h)
    }

    /// The key of git blob `id` scanned under `path`.
    pub(crate) fn blob_key(&self, scanner: &Scanner, id: &[u8], path: &str) -> Key {
        let mut h = Sha256::new();
        h.update(b"blob\0");
        h.update(id);
        h.update([0]);
        let rules = scanner.rules();
        for &i in &self.path_rules {
            h.update([u8::from(rules[i].applies_to_path(path))]);
        }
        truncate(h)
    }

    /// The key of the working-tree file reported as `path` with metadata `meta` (from
    /// `fstat` before reading), or `None` when it must not be recorded or looked up: a
    /// racily recent ctime, or a platform without ctime.
    pub(crate) fn file_key(&self, path: &str, meta: &std::fs::Metadata) -> Option<Key> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let ctime = Duration::new(u64::try_from(meta.ctime()).ok()?, u32::try_from(meta.ctime_nsec()).ok()?);
            if ctime >= self.cutoff {
                return None;
            }
            let mut h = Sha256::new();
            h.update(b"file\0");
            h.update(path.as_bytes());
            h.update([0]);
            for v in [meta.dev(), meta.ino(), meta.size()] {
                h.update(v.to_le_bytes());
            }
            for v in [meta.mtime(), meta.mtime_nsec(), meta.ctime(), meta.ctime_nsec()] {
                h.update(v.to_le_bytes());
            }
            Some(truncate(h))
        }
        #[cfg(not(unix))]
        {
            let _ = (path, meta);
            None
        }
    }
}

fn truncate(h: Sha256) -> Key {
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The fingerprint of what decides a scan's outcome (see the module docs).
fn fingerprint(scanner: &Scanner) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(b"airlock-scan clean cache 1");
    field(env!("CARGO_PKG_VERSION").as_bytes());
    field(&engine_hash::ENGINE_SOURCE_HASH.to_le_bytes());
    let set = scanner.rule_set();
    for a in &set.default_allow {
        field(a.as_str().as_bytes());
    }
    for r in &set.rules {
        field(b"rule");
        field(r.id.as_bytes());
        for k in &r.keywords {
            field(k.as_bytes());
        }
        field(b"pattern");
        field(r.pattern.as_bytes());
        field(r.checksum.as_deref().unwrap_or("").as_bytes());
        field(format!("{:?}/{:?}", r.checksum_fail, r.confidence).as_bytes());
        field(&r.min_entropy.map_or(u64::MAX, f64::to_bits).to_le_bytes());
        field(r.paths_pattern.as_deref().unwrap_or("\0").as_bytes());
        for a in &r.allow {
            field(a.pattern().as_bytes());
        }
        field(b"allow_match");
        for a in &r.allow_match {
            field(a.pattern().as_bytes());
        }
        field(b"tags");
        for t in &r.tags {
            field(t.as_bytes());
        }
    }
    h.finalize().into()
}

/// The keys of a cache file with fingerprint `fp`, or `None` if it is not one.
fn parse(bytes: &[u8], fp: &[u8; 32]) -> Option<Vec<Key>> {
    if bytes.len() < HEADER + 4 || &bytes[..16] != MAGIC || &bytes[16..48] != fp {
        return None;
    }
    let n = usize::try_from(u64::from_le_bytes(bytes[48..56].try_into().ok()?)).ok()?;
    if n > MAX_ENTRIES || bytes.len() != HEADER + n * 16 + 4 {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let keys: Vec<Key> = body[HEADER..].chunks_exact(16).map(|c| c.try_into().unwrap_or([0; 16])).collect();
    keys.windows(2).all(|w| w[0] < w[1]).then_some(keys)
}

/// Write `data` to a new temporary file (0600) next to `file` and rename it over `file`.
fn write_atomically(file: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let io = |action: &'static str, path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, action, source }
    };
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let tmp = dir.join(format!(".{CACHE_FILE}.{}.{nanos}.tmp", std::process::id()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut f| f.write_all(data));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write the scan cache", &tmp)(e));
    }
    std::fs::rename(&tmp, file).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("replace the scan cache", file)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner() -> Scanner {
        Scanner::from_toml(&[(
            "t.toml",
            "[[rule]]\nid = \"tok\"\ndescription = \"t\"\nkeywords = [\"tok_\"]\nregex = '''\\b(tok_[A-Za-z0-9]{8,})'''\nconfidence = \"high\"\n\
             [[rule]]\nid = \"netrc\"\ndescription = \"n\"\nregex = '''password\\s+(\\S+)'''\npaths = '''(^|/)\\.netrc$'''\nconfidence = \"high\"\n",
        )])
        .unwrap()
    }

    #[test]
    fn round_trip_and_corruption_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let s = scanner();
        let c = CleanCache::open(dir.path(), &s);
        assert!(c.is_empty());
        assert!(!c.save().unwrap(), "nothing added, nothing written");
        let k = c.blob_key(&s, &[7; 20], "a.txt");
        c.record(k);
        assert!(c.save().unwrap());
        let file = dir.path().join(CACHE_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let c = CleanCache::open(dir.path(), &s);
        assert_eq!(c.len(), 1);
        assert!(c.hit(&k));
        let good = std::fs::read(&file).unwrap();
        for bad in [&good[..good.len() - 1], &good[..10], b"", &[good.as_slice(), &[0]].concat()] {
            std::fs::write(&file, bad).unwrap();
            assert!(CleanCache::open(dir.path(), &s).is_empty());
        }
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        assert!(CleanCache::open(dir.path(), &s).is_empty(), "checksum");
        // another rule set: another fingerprint, the cache is dropped
        std::fs::write(&file, &good).unwrap();
        let other =
            Scanner::from_toml(&[("t.toml", "[[rule]]\nid = \"x\"\ndescription = \"x\"\nkeywords = [\"x_\"]\nregex = 'x_(\\d+)'\nconfidence = \"low\"\n")])
                .unwrap();
        assert!(CleanCache::open(dir.path(), &other).is_empty());
        assert_eq!(CleanCache::open(dir.path(), &s).len(), 1);
    }

    #[test]
    fn blob_keys_depend_on_the_path_class_only() {
        let s = scanner();
        let c = CleanCache::in_memory(&s);
        let id = [1u8; 20];
        assert_eq!(c.blob_key(&s, &id, "a.txt"), c.blob_key(&s, &id, "src/b.rs"));
        assert_ne!(c.blob_key(&s, &id, "a.txt"), c.blob_key(&s, &id, "home/u/.netrc"));
        assert_ne!(c.blob_key(&s, &id, "a.txt"), c.blob_key(&s, &[2; 20], "a.txt"));
    }

    #[test]
    fn racily_recent_files_are_not_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "x").unwrap();
        let c = CleanCache::in_memory(&scanner());
        assert_eq!(c.file_key("f", &std::fs::metadata(&p).unwrap()), None, "written just now");
    }
}
