//! Sources: files (hidden and gitignored included), binaries and oversized files
//! skipped and counted, git history, process environments, home locations.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock_scan::{ScanOptions, Source};

use crate::{GH_TOKEN, PEM_KEY, put, test_scanner};

fn paths_of(r: &airlock_scan::ScanReport) -> Vec<String> {
    r.findings.iter().map(|f| f.path.clone()).collect()
}

fn rel(root: &Path, r: &airlock_scan::ScanReport) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    paths_of(r).into_iter().map(|p| p.strip_prefix(&prefix).unwrap_or(&p).to_owned()).collect()
}

#[test]
fn hidden_and_gitignored_files_are_scanned() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    put(root, ".gitignore", "secrets/\n.npmrc\n*.key\n");
    // `.git/config` is read like any file; the object database is history's job
    put(root, ".git/HEAD", "ref: refs/heads/main\n");
    std::fs::create_dir_all(root.join(".git/refs/heads")).unwrap();
    put(root, ".git/config", format!("[remote \"origin\"]\n\turl = https://x:{GH_TOKEN}@github.com/o/r.git\n"));
    put(root, ".git/objects/ab/cdef0123", format!("token = {GH_TOKEN}\n"));
    put(root, "secrets/.env", "DATABASE_URL=postgres://app:Tr0ub4dor3x@db.internal:5432/app\n");
    put(root, ".npmrc", format!("//npm.pkg.github.com/:_authToken={GH_TOKEN}\n"));
    put(root, ".ssh/id_ed25519", PEM_KEY);
    put(root, "src/main.rs", "fn main() {}\n");
    let r = test_scanner().scan_paths(&[root.to_path_buf()], &ScanOptions::default()).unwrap();
    let found = rel(root, &r);
    assert_eq!(found, vec![".git/config", ".npmrc", ".ssh/id_ed25519", "secrets/.env"], "{found:?}");
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(rules, vec!["test-github-pat", "test-github-pat", "test-private-key", "test-postgres-url"]);
    assert!(r.findings.iter().all(|f| f.source == Source::File));
    let env = &r.findings[3];
    assert_eq!((env.line, env.column), (1, 29));
    assert_eq!(env.secret.expose(), "Tr0ub4dor3x");
    assert_eq!(r.stats.files_scanned, 7, "{:?}", r.stats);
}

#[test]
fn relative_paths_are_reported_without_dot_slash_and_files_can_be_named() {
    let d = tempfile::tempdir().unwrap();
    let f = put(d.path(), "a/token.txt", format!("x {GH_TOKEN}\n"));
    let r = test_scanner().scan_paths(std::slice::from_ref(&f), &ScanOptions::default()).unwrap();
    assert_eq!(paths_of(&r), vec![f.display().to_string()]);
    let e = test_scanner().scan_paths(&[d.path().join("missing")], &ScanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn binaries_and_oversized_files_are_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let mut bin = b"\x7fELF\0\0\0".to_vec();
    bin.extend_from_slice(GH_TOKEN.as_bytes());
    put(root, "tool.bin", bin);
    let mut big = "x".repeat(2000);
    big.push_str(GH_TOKEN);
    put(root, "big.txt", big);
    put(root, "small.txt", format!("{GH_TOKEN}\n"));
    put(root, "empty.txt", "");
    let opts = ScanOptions::default().with_max_file_size(1024);
    let r = test_scanner().scan_paths(&[root.to_path_buf()], &opts).unwrap();
    assert_eq!(rel(root, &r), vec!["small.txt"]);
    assert_eq!(r.stats.skipped_binary, 1);
    assert_eq!(r.stats.skipped_large, 1);
    assert_eq!(r.stats.files_scanned, 2);
    let mut summary = Vec::new();
    airlock_scan::write_summary(&mut summary, &r).unwrap();
    let summary = String::from_utf8(summary).unwrap();
    assert!(summary.contains("skipped 1 binary, 1 large"), "{summary}");
}

#[test]
fn symlink_loops_and_dangling_links_do_not_hang_or_fail() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    put(root, "a/secret.txt", format!("{GH_TOKEN}\n"));
    std::os::unix::fs::symlink(root.join("a"), root.join("a/loop")).unwrap();
    std::os::unix::fs::symlink(root, root.join("a/up")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    std::os::unix::fs::symlink(root.join("a/secret.txt"), root.join("link.txt")).unwrap();
    let r = test_scanner().scan_paths(&[root.to_path_buf()], &ScanOptions::default()).unwrap();
    // the file itself, and the file symlink under its own name; directory links not followed
    assert_eq!(rel(root, &r), vec!["a/secret.txt", "link.txt"]);
}

#[test]
fn unreadable_files_are_counted_not_fatal() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let p = put(root, "locked.txt", format!("{GH_TOKEN}\n"));
    put(root, "open.txt", format!("{GH_TOKEN}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable_anyway = std::fs::read(&p).is_ok(); // root ignores permission bits
    let r = test_scanner().scan_paths(&[root.to_path_buf()], &ScanOptions::default()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    if readable_anyway {
        assert_eq!(r.findings.len(), 2);
    } else {
        assert_eq!(rel(root, &r), vec!["open.txt"]);
        assert_eq!(r.stats.skipped_unreadable, 1);
    }
}

#[test]
fn output_order_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    for i in 0..40 {
        put(d.path(), &format!("d{}/f{i}.txt", i % 7), format!("a\n{GH_TOKEN}\nb {GH_TOKEN}\n"));
    }
    let s = test_scanner();
    let a = paths_of(&s.scan_paths(&[d.path().to_path_buf()], &ScanOptions::default()).unwrap());
    for _ in 0..3 {
        assert_eq!(a, paths_of(&s.scan_paths(&[d.path().to_path_buf()], &ScanOptions::default()).unwrap()));
    }
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(a, sorted);
    assert_eq!(a.len(), 80);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn git_history_reports_the_commit_that_introduced_a_removed_secret() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    git(root, &["init", "-q"]);
    put(root, "README.md", "hello\n");
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "first"]);
    put(root, "config/app.env", format!("TOKEN={GH_TOKEN}\n"));
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "add config"]);
    let introduced = git(root, &["rev-parse", "HEAD"]);
    // the same secret again in another commit at the same path, then removed
    put(root, "config/app.env", format!("# comment\nTOKEN={GH_TOKEN}\n"));
    git(root, &["commit", "-qam", "touch"]);
    std::fs::remove_file(root.join("config/app.env")).unwrap();
    git(root, &["commit", "-qam", "remove secret"]);
    // a branch with a different secret
    git(root, &["checkout", "-qb", "side"]);
    put(root, "side.txt", "postgres://u:S1deBranchPw@h/db\n");
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "side"]);
    let side = git(root, &["rev-parse", "HEAD"]);
    git(root, &["checkout", "-q", "main"]);

    let s = test_scanner();
    let work = s.scan_paths(&[root.to_path_buf()], &ScanOptions::default()).unwrap();
    assert!(work.findings.is_empty(), "the working tree is clean: {:?}", paths_of(&work));
    let r = s.scan_git_history(root, &ScanOptions::default()).unwrap();
    let got: Vec<(String, String, Option<String>)> = r.findings.iter().map(|f| (f.path.clone(), f.rule.clone(), f.commit.clone())).collect();
    assert_eq!(
        got,
        vec![
            ("config/app.env".to_owned(), "test-github-pat".to_owned(), Some(introduced)),
            ("side.txt".to_owned(), "test-postgres-url".to_owned(), Some(side)),
        ]
    );
    assert!(r.findings.iter().all(|f| f.source == Source::Git));
    // scanning from a subdirectory finds the same repository
    std::fs::create_dir_all(root.join("sub")).unwrap();
    assert_eq!(s.scan_git_history(&root.join("sub"), &ScanOptions::default()).unwrap().findings.len(), 2);
    // not a repository: a clear error
    let plain = tempfile::tempdir().unwrap();
    let e = s.scan_git_history(plain.path(), &ScanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("git"), "{e}");
}

#[test]
fn environment_variables_are_scanned_by_name() {
    let s = test_scanner();
    let vars = vec![("HOME", "/home/u".to_owned()), ("GITHUB_TOKEN", GH_TOKEN.to_owned()), ("PATH", "/usr/bin".to_owned())];
    let r = s.scan_env("env", &vars);
    assert_eq!(paths_of(&r), vec!["env:GITHUB_TOKEN"]);
    assert_eq!(r.findings[0].source, Source::Env);
    assert_eq!(r.stats.files_scanned, 3);
}

#[test]
fn environment_of_another_process() {
    let mut child = Command::new("sleep").arg("30").env("DEPLOY_TOKEN", GH_TOKEN).spawn().unwrap();
    // right after spawn the kernel may still show an empty environment: poll briefly
    let mut vars = Vec::new();
    for _ in 0..200 {
        vars = airlock_scan::environ_of_pid(child.id()).unwrap();
        if !vars.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"DEPLOY_TOKEN"), "{names:?}");
    let r = test_scanner().scan_env(&format!("env[{}]", child.id()), &vars);
    assert_eq!(paths_of(&r), vec![format!("env[{}]:DEPLOY_TOKEN", child.id())]);
    // our own environment is readable too, and a missing process is a clear error
    assert!(!airlock_scan::process_env().is_empty());
    let e = airlock_scan::environ_of_pid(u32::MAX - 1).unwrap_err().to_string();
    assert!(e.contains("environ"), "{e}");
}

#[test]
fn home_locations_in_a_fake_home() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path();
    put(home, ".netrc", "machine api.example.com login me password s3cr3tV4lue\n");
    put(home, ".ssh/id_ed25519", PEM_KEY);
    put(home, ".ssh/id_ed25519.pub", "ssh-ed25519 AAAAC3Nza me@host\n");
    put(home, ".git-credentials", format!("https://me:{GH_TOKEN}@github.com\n"));
    put(home, ".bash_history", "psql postgres://admin:H1storyPw9@db.prod/app\n");
    put(home, ".claude/projects/p/transcript.jsonl", format!("{{\"text\":\"use {GH_TOKEN}\"}}\n"));
    put(home, ".aider.chat.history.md", format!("token {GH_TOKEN}\n"));
    // not a well-known location: not scanned by --home
    put(home, "notes/todo.txt", format!("{GH_TOKEN}\n"));
    put(home, "projects/app/.env", format!("T={GH_TOKEN}\n"));

    let listed: Vec<PathBuf> = airlock_scan::home_locations(home);
    assert!(listed.contains(&home.join(".netrc")) && listed.contains(&home.join(".aider.chat.history.md")));
    let r = test_scanner().scan_home(home, &ScanOptions::default()).unwrap();
    let got = rel(home, &r);
    assert_eq!(
        got,
        vec![".aider.chat.history.md", ".bash_history", ".claude/projects/p/transcript.jsonl", ".git-credentials", ".netrc", ".ssh/id_ed25519"],
        "{got:?}"
    );
    assert!(r.findings.iter().all(|f| f.source == Source::Home && Path::new(&f.path).is_absolute()));
    // an empty home: nothing, no error
    let empty = tempfile::tempdir().unwrap();
    assert!(test_scanner().scan_home(empty.path(), &ScanOptions::default()).unwrap().findings.is_empty());
    // the table documents every entry
    assert!(airlock_scan::HOME_LOCATIONS.iter().all(|l| !l.what.is_empty()));
    for must in [
        ".aws/credentials",
        ".kube/config",
        ".docker/config.json",
        ".netrc",
        ".git-credentials",
        ".pgpass",
        ".npmrc",
        ".pypirc",
        ".config/gh/hosts.yml",
        ".ssh/",
        ".config/gcloud/",
        ".azure/",
    ] {
        assert!(airlock_scan::HOME_LOCATIONS.iter().any(|l| l.path == must), "{must} missing from HOME_LOCATIONS");
    }
}
