//! The clean cache: a second workspace scan reads only what is new, and never hides a
//! finding — not a secret file, not a secret in history, not a file rewritten with its
//! mtime put back, not a new commit, not a clean blob copied to a credential path.

use std::path::Path;
use std::time::Duration;

use airlock_scan::{CleanCache, ScanOptions, ScanReport, Scanner};

use crate::put;
use crate::workspace::git;

const UUID: &str = "3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9";

fn cached(s: &Scanner, root: &Path, state: &Path) -> ScanReport {
    let c = CleanCache::open(state, s);
    let r = s.scan_workspace_cached(root, &ScanOptions::default(), &c).unwrap();
    c.save().unwrap();
    r
}

fn rules(r: &ScanReport) -> Vec<(String, String, Option<String>)> {
    let mut v: Vec<_> = r.findings.iter().map(|f| (f.path.rsplit('/').next().unwrap_or("").to_owned(), f.rule.clone(), f.commit.clone())).collect();
    v.sort();
    v
}

#[test]
fn a_second_scan_reads_only_what_is_new_and_finds_the_same() {
    let d = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = d.path();
    git(root, &["init", "-q"]);
    for i in 0..20 {
        put(root, &format!("src/f{i}.rs"), format!("fn f{i}() {{}}\n"));
    }
    put(root, "deploy.sh", format!("export API_TOKEN={UUID}\n"));
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "one"]);
    put(root, "src/f1.rs", "fn f1() { changed() }\n");
    git(root, &["commit", "-qam", "two"]);
    // files changed less than RACY_MARGIN before the scan are not recorded
    std::thread::sleep(airlock_scan::cache::RACY_MARGIN + Duration::from_millis(200));
    let s = Scanner::builtin().unwrap();
    let plain = s.scan_workspace(root, &ScanOptions::default()).unwrap();
    let first = cached(&s, root, state.path());
    assert_eq!(rules(&first), rules(&plain));
    assert_eq!(first.stats.cached, 0);
    assert!(!rules(&first).is_empty());
    let second = cached(&s, root, state.path());
    assert_eq!(rules(&second), rules(&plain), "a finding is never cached");
    // only deploy.sh (a finding) and its blob are read again
    assert!(second.stats.cached >= 20, "{:?}", second.stats);
    assert_eq!(second.stats.files_scanned, 2, "{:?}", second.stats);

    // a new commit with a secret on top of cached history is found, with its commit
    put(root, "src/f2.rs", "const TOKEN: &str = \"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\";\n");
    git(root, &["commit", "-qam", "three"]);
    let head = git(root, &["rev-parse", "HEAD"]);
    git(root, &["checkout", "-q", "HEAD~1", "--", "src/f2.rs"]);
    git(root, &["commit", "-qam", "four"]);
    let third = cached(&s, root, state.path());
    let plain = s.scan_workspace(root, &ScanOptions::default()).unwrap();
    assert_eq!(rules(&third), rules(&plain));
    assert!(third.findings.iter().any(|f| f.path == "src/f2.rs" && f.commit.as_deref() == Some(head.as_str())), "{:?}", rules(&third));
}

#[test]
fn a_file_rewritten_with_its_mtime_put_back_is_scanned_again() {
    let d = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let secret = format!("API_TOKEN={UUID}\n");
    let p = put(d.path(), ".env", format!("{:<w$}\n", "# nothing to see here", w = secret.len() - 1));
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    std::thread::sleep(airlock_scan::cache::RACY_MARGIN + Duration::from_millis(200));
    let s = Scanner::builtin().unwrap();
    assert!(cached(&s, d.path(), state.path()).findings.is_empty());
    assert_eq!(cached(&s, d.path(), state.path()).stats.cached, 1);
    // same size, same mtime, a secret now: ctime moved, so it is read again
    std::fs::write(&p, &secret).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), secret.len() as u64);
    std::fs::File::options().write(true).open(&p).unwrap().set_modified(mtime).unwrap();
    let r = cached(&s, d.path(), state.path());
    assert_eq!(r.findings.len(), 1, "{:?}", r.stats);
    assert_eq!(r.stats.cached, 0);
}

#[test]
fn a_clean_blob_copied_to_a_credential_path_is_scanned_there() {
    let d = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let root = d.path();
    git(root, &["init", "-q"]);
    let netrc = "machine api.example.com login me password s3cr3tV4lue\n";
    put(root, "notes/machines.txt", netrc);
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "notes"]);
    let s = Scanner::builtin().unwrap();
    assert!(!cached(&s, root, state.path()).findings.iter().any(|f| f.rule == "netrc-password"));
    std::fs::remove_file(root.join("notes/machines.txt")).unwrap();
    put(root, ".netrc", netrc);
    git(root, &["add", "-A"]);
    git(root, &["commit", "-qm", "move"]);
    std::fs::remove_file(root.join(".netrc")).unwrap();
    git(root, &["commit", "-qam", "rm"]);
    for r in [s.scan_workspace(root, &ScanOptions::default()).unwrap(), cached(&s, root, state.path())] {
        assert!(r.findings.iter().any(|f| f.rule == "netrc-password" && f.path == ".netrc"), "{:?}", rules(&r));
    }
}
