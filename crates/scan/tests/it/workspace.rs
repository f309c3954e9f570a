//! Workspaces: files plus the history of every git repository inside (references,
//! stash, reflogs; nested and bare repositories), in one walk — what an agent working
//! there can read with `cat`, `git log -p --all`, `git stash show -p` or `git reflog -p`.

use std::path::Path;
use std::process::Command;

use airlock_scan::{GitReach, ScanOptions, ScanReport, Scanner, Source};

use crate::put;

/// Run git in `dir` with a fixed identity and no global or system configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A repository at `dir` with one commit (a README).
pub fn repo_with_readme(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    put(dir, "README.md", "hello\n");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "first"]);
}

fn scan(root: &Path) -> ScanReport {
    Scanner::builtin().unwrap().scan_workspace(root, &ScanOptions::default()).unwrap()
}

/// (source, repo relative to root, path, rule, reach) of a finding.
type Summary = (Source, Option<String>, String, String, Option<GitReach>);

fn summary(root: &Path, r: &ScanReport) -> Vec<Summary> {
    let prefix = root.display().to_string();
    r.findings
        .iter()
        .map(|f| {
            let repo = f.repo.as_deref().map(|p| p.strip_prefix(&prefix).unwrap_or(p).trim_start_matches('/').to_owned());
            (f.source, repo, f.path.clone(), f.rule.clone(), f.reach)
        })
        .collect()
}

const UUID_A: &str = "3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9";
const UUID_B: &str = "8b0e4d2c-1f7a-4c3e-b5d9-6a2f0e8c7b41";

#[test]
fn a_token_committed_then_deleted_is_found_only_in_history() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    repo_with_readme(root);
    put(root, ".env", format!("CLOUD_TOKEN={UUID_A}\n"));
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "add env"]);
    let introduced = git(root, &["rev-parse", "HEAD"]);
    git(root, &["rm", "-q", ".env"]);
    git(root, &["commit", "-qm", "oops"]);

    let r = scan(root);
    assert_eq!(summary(root, &r), vec![(Source::Git, Some(String::new()), ".env".into(), "credential-variable-env".into(), Some(GitReach::Refs))]);
    assert_eq!(r.findings[0].commit.as_deref(), Some(introduced.as_str()));
    assert_eq!(r.stats.repositories, 1);
    assert!(!format!("{:?}", r.findings).contains(UUID_A), "a finding's Debug never shows the value");
}

#[test]
fn a_token_only_in_an_older_stash_entry_is_found_as_stash() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    repo_with_readme(root);
    put(root, "deploy.sh", "#!/bin/sh\necho deploy\n");
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "script"]);
    // stash@{1}: a tracked file with the token; stash@{0}: an untracked file (stash -u)
    put(root, "deploy.sh", format!("#!/bin/sh\nexport API_TOKEN={UUID_A}\n"));
    git(root, &["stash", "-q"]);
    put(root, "notes/.env.local", format!("API_TOKEN={UUID_B}\n"));
    git(root, &["stash", "-q", "-u"]);
    assert!(!root.join("notes/.env.local").exists());

    let r = scan(root);
    let got = summary(root, &r);
    assert_eq!(
        got,
        vec![
            (Source::Git, Some(String::new()), "deploy.sh".into(), "credential-variable-env".into(), Some(GitReach::Stash)),
            (Source::Git, Some(String::new()), "notes/.env.local".into(), "credential-variable-env".into(), Some(GitReach::Stash)),
        ],
        "the older entry is reachable only through refs/stash's reflog"
    );
}

#[test]
fn a_token_left_in_the_reflog_by_reset_hard_is_found_as_reflog() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    repo_with_readme(root);
    put(root, "ci/.env.ci", format!("export CLOUD_TOKEN=\"{UUID_A}\"\n"));
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "ci env"]);
    let lost = git(root, &["rev-parse", "HEAD"]);
    git(root, &["reset", "-q", "--hard", "HEAD~1"]);
    // and an amended commit: the pre-amend commit is only in the reflog too
    put(root, "docker-compose.yml", format!("services:\n  app:\n    environment:\n      - API_TOKEN={UUID_B}\n"));
    git(root, &["add", "."]);
    git(root, &["commit", "-qm", "compose"]);
    put(root, "docker-compose.yml", "services:\n  app:\n    environment:\n      - API_TOKEN=${API_TOKEN}\n");
    git(root, &["commit", "-q", "-a", "--amend", "-m", "compose"]);

    let r = scan(root);
    let got = summary(root, &r);
    assert_eq!(
        got,
        vec![
            (Source::Git, Some(String::new()), "ci/.env.ci".into(), "credential-variable-env".into(), Some(GitReach::Reflog)),
            (Source::Git, Some(String::new()), "docker-compose.yml".into(), "credential-variable-ci".into(), Some(GitReach::Reflog)),
        ]
    );
    assert_eq!(r.findings[0].commit.as_deref(), Some(lost.as_str()));
}

#[test]
fn nested_and_bare_repositories_are_found_and_named() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path(); // not a repository itself
    let a = root.join("projects/a");
    repo_with_readme(&a);
    put(&a, ".github/workflows/deploy.yml", format!("jobs:\n  d:\n    env:\n      CLOUD_TOKEN: {UUID_A}\n"));
    git(&a, &["add", "."]);
    git(&a, &["commit", "-qm", "wf"]);
    let b = root.join("projects/group/b");
    repo_with_readme(&b);
    put(&b, "Dockerfile", format!("FROM scratch\nENV API_TOKEN={UUID_B}\n"));
    git(&b, &["add", "."]);
    git(&b, &["commit", "-qm", "df"]);
    git(&b, &["rm", "-q", "Dockerfile"]);
    git(&b, &["commit", "-qm", "rm"]);
    git(root, &["clone", "-q", "--bare", b.to_str().unwrap(), "mirror/b.git"]);

    let r = scan(root);
    let got = summary(root, &r);
    assert_eq!(
        got,
        vec![
            (Source::File, None, format!("{}/projects/a/.github/workflows/deploy.yml", root.display()), "credential-variable-ci".into(), None),
            (Source::Git, Some("mirror/b.git".into()), "Dockerfile".into(), "credential-variable-env".into(), Some(GitReach::Refs)),
            (Source::Git, Some("projects/a".into()), ".github/workflows/deploy.yml".into(), "credential-variable-ci".into(), Some(GitReach::Refs)),
            (Source::Git, Some("projects/group/b".into()), "Dockerfile".into(), "credential-variable-env".into(), Some(GitReach::Refs)),
        ]
    );
    assert_eq!(r.stats.repositories, 3);
    assert_eq!(airlock_scan::sources::git::find_repositories(root).unwrap().len(), 3);
}

#[test]
fn no_repository_means_no_history_and_broken_or_shallow_ones_are_not_errors() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    put(root, "src/main.rs", "fn main() {}\n");
    let r = scan(root);
    assert!(r.findings.is_empty());
    assert_eq!(r.stats.repositories, 0);

    // a worktree whose main repository is gone: a `.git` file pointing nowhere
    put(root, "stale/.git", "gitdir: /nonexistent/.git/worktrees/stale\n");
    let r = scan(root);
    assert_eq!(r.stats.repositories, 0);
    assert!(r.stats.skipped_unreadable >= 1);

    // a shallow clone: the boundary commit's parent is not in the object database
    let up = root.join("upstream");
    repo_with_readme(&up);
    put(&up, ".env", format!("CLOUD_TOKEN={UUID_A}\n"));
    git(&up, &["add", "."]);
    git(&up, &["commit", "-qm", "env"]);
    git(&up, &["rm", "-q", ".env"]);
    git(&up, &["commit", "-qm", "rm"]);
    let url = format!("file://{}", up.display());
    git(root, &["clone", "-q", "--depth", "1", &url, "shallow"]);
    let r = scan(root);
    let repos: Vec<Option<String>> = summary(root, &r).into_iter().map(|s| s.1).collect();
    assert_eq!(repos, vec![Some("upstream".to_owned())], "the shallow clone holds no history of the token");
    assert_eq!(r.stats.repositories, 2);
}

#[test]
fn credentials_in_git_config_and_a_git_credential_store_are_found() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    repo_with_readme(root);
    // a token in a remote URL (as user:password and as the user name)
    git(root, &["remote", "add", "origin", "https://x-access-token:Tq9Lm4XaWz81kdPq0Vk7rQ2mZ@git.example.com/o/r.git"]);
    git(root, &["remote", "add", "mirror", "https://q7Wz2pLx9Tr0ub4dor3xVk7rQ2mZ@git.example.com/o/r.git"]);
    // what actions/checkout persists (persist-credentials: true)
    git(
        root,
        &["config", "--local", "http.https://github.com/.extraheader", "AUTHORIZATION: basic eC1hY2Nlc3MtdG9rZW46Z2hzX1hxN3ZUMmJMbTlOcFI0c1c4eVoxY0Y1aEozaw=="],
    );
    // `credential.helper = store --file .git/credentials`
    put(root, ".git/credentials", "https://me:Zq8vL2pX9wK4mN7b@git.example.com\n");
    let r = scan(root);
    let mut got: Vec<(String, String)> =
        r.findings.iter().map(|f| (f.path.rsplit_once(".git/").map_or(f.path.clone(), |(_, p)| p.to_owned()), f.rule.clone())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("config".to_owned(), "git-config-url-token".to_owned()),
            ("config".to_owned(), "git-extraheader".to_owned()),
            ("config".to_owned(), "url-credentials".to_owned()),
            ("credentials".to_owned(), "git-credentials".to_owned()),
        ],
        "{got:?}"
    );
    assert_eq!(r.stats.repositories, 1, "the .git directory is not a second (bare) repository");
    // the object database itself is left to the history scan
    assert!(r.findings.iter().all(|f| !f.path.contains("/objects/")));
}
