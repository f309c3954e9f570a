//! Issue 4: `airlock scan` — exit codes 0/1/2, formats, bad inputs, baselines,
//! `--fix --yes` round trips with undo, and refusing to rewrite without a vault.

use std::path::{Path, PathBuf};

use crate::{Sandbox, contains};

/// A GitHub classic PAT with a valid CRC32 (found by the built-in rule with high confidence).
const GH: &str = "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";
/// Another one, for "a new finding after the baseline".
const GH2: &str = "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";
const NETRC_PW: &str = "n3trcPassw0rdX";

/// A user rule file recognising .netrc passwords (independent of the built-in rules).
const NETRC_RULE: &str = r#"
[[rule]]
id = "it-netrc-password"
description = "netrc password (integration test rule)"
keywords = []
paths = '''(^|/)[._]netrc$'''
regex = '''(?m)\bpassword\s+(\S+)'''
confidence = "high"
examples_true = ["machine h login me password s3cr3tV4lue"]
"#;

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn rules_file(s: &Sandbox) -> PathBuf {
    let p = s.dir.path().join("netrc-rule.toml");
    write(&p, NETRC_RULE);
    p
}

#[test]
fn exit_codes_clean_findings_error() {
    let s = Sandbox::new();
    let w = s.work();
    write(&w.join("src/main.rs"), "fn main() {}\n");
    let r = s.run(&["scan"]).ok();
    assert!(r.stderr.contains("0 findings"), "{}", r.stderr);
    write(&w.join("deploy/.env"), &format!("GITHUB_TOKEN={GH}\n"));
    let r = s.run(&["scan", "--no-progress"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("deploy/.env") && r.stdout.contains("github-pat-classic") && r.stdout.contains("ghp_…l35y"), "{}", r.stdout);
    assert!(!r.stdout.contains(GH) && !r.stderr.contains(GH), "raw value printed without --show-secrets");
    assert!(!r.stdout.contains('\x1b'), "no colours off a terminal");
    assert!(r.stderr.contains("next: move them into the vault with `airlock scan --fix"), "the report says what to do next: {}", r.stderr);
    let r = s.run(&["scan", "--show-secrets"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains(GH));
    // errors are 2, with a message
    s.run(&["scan", "nope/missing"]).fails(2, "does not exist");
    s.run(&["scan", "--format", "xml"]).fails(2, "xml");
    s.run(&["scan", "--max-file-size", "ten"]).fails(2, "size");
    s.run(&["scan", "--json", "--format", "sarif"]).fails(2, "cannot be used with");
    // explicit files, as pre-commit passes them
    s.run(&["scan", "src/main.rs"]).ok();
    assert_eq!(s.run(&["scan", "src/main.rs", "deploy/.env"]).code, 1);
}

#[test]
fn bad_rule_files_and_baselines_exit_2_with_the_line() {
    let s = Sandbox::new();
    let w = s.work();
    write(&w.join("a.txt"), "hello\n");
    write(&w.join("bad.toml"), "[[rule]]\nid = \"x\"\ndescription = \"d\"\nkeywords = [\"k\"]\nregex = 'k[0-9'\nconfidence = \"low\"\n");
    s.run(&["scan", "--rules", "bad.toml", "a.txt"]).fails(2, "bad.toml:2");
    write(&w.join("syntax.toml"), "[[rule]]\nid = \"x\"\nregex = \n");
    s.run(&["scan", "--rules", "syntax.toml", "a.txt"]).fails(2, "line 3");
    s.run(&["scan", "--rules", "missing.toml", "a.txt"]).fails(2, "missing.toml");
    write(&w.join("baseline.json"), "{\"version\": 1, \"fingerprints\": [\"zz\"]}");
    s.run(&["scan", "--baseline", "baseline.json", "a.txt"]).fails(2, "baseline");
    s.run(&["scan", "--baseline", "nope.json", "a.txt"]).fails(2, "nope.json");
}

#[test]
fn json_sarif_and_baselines() {
    let s = Sandbox::new();
    let w = s.work();
    write(&w.join("app.env"), &format!("GITHUB_TOKEN={GH}\n"));
    let a = s.run(&["scan", "--json", "app.env"]);
    let b = s.run(&["scan", "--format", "json", "app.env"]);
    assert_eq!((a.code, b.code), (1, 1));
    let va: serde_json::Value = serde_json::from_str(&a.stdout).unwrap();
    let vb: serde_json::Value = serde_json::from_str(&b.stdout).unwrap();
    assert_eq!(va["findings"], vb["findings"]);
    let f = &va["findings"][0];
    assert_eq!(
        (f["rule"].as_str(), f["path"].as_str(), f["line"].as_u64(), f["column"].as_u64()),
        (Some("github-pat-classic"), Some("app.env"), Some(1), Some(14))
    );
    assert!(f.get("secret").is_none() && !a.stdout.contains(GH));
    let sarif = s.run(&["scan", "--format", "sarif", "app.env"]);
    assert_eq!(sarif.code, 1);
    let v: serde_json::Value = serde_json::from_str(&sarif.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "github-pat-classic");
    // accept today's findings, then fail only on new ones
    let r = s.run(&["scan", "--write-baseline", "base.json", "app.env"]).ok();
    assert!(r.stderr.contains("wrote baseline"), "{}", r.stderr);
    assert!(!std::fs::read_to_string(w.join("base.json")).unwrap().contains(GH));
    s.run(&["scan", "--baseline", "base.json", "app.env"]).ok();
    // the baselined value elsewhere stays suppressed; a new value does not
    write(&w.join("copy.env"), &format!("X=1\nSAME={GH}\n"));
    s.run(&["scan", "--baseline", "base.json", "app.env", "copy.env"]).ok();
    write(&w.join("new.env"), &format!("X=1\nOTHER={GH2}\n"));
    let r = s.run(&["scan", "--baseline", "base.json", "app.env", "new.env"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("new.env") && !r.stdout.contains("app.env"), "{}", r.stdout);
    assert!(r.stderr.contains("1 suppressed by baseline"), "{}", r.stderr);
    // inline suppression
    write(&w.join("inline.py"), &format!("t = \"{GH2}\"  # airlock:allow\n"));
    s.run(&["scan", "inline.py"]).ok();
}

#[test]
fn sources_env_user_home_and_git_history() {
    let s = Sandbox::new();
    let w = s.work();
    // --env: this process's environment
    let mut c = s.cmd(&["scan", "--env", "--json"]);
    c.env("LEAKED_TOKEN", GH);
    let r = s.run_with(c, None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stdout.contains("env:LEAKED_TOKEN") && !r.stdout.contains(GH));
    // --home: well-known locations in $HOME only (--user-home is an alias)
    let home = s.dir.path().join("fakehome");
    write(&home.join(".config/gh/hosts.yml"), &format!("github.com:\n    oauth_token: {GH}\n"));
    write(&home.join("Documents/notes.txt"), &format!("{GH}\n"));
    let mut c = s.cmd(&["scan", "--user-home", "--json"]);
    c.env("HOME", &home);
    let r = s.run_with(c, None);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let paths: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec![home.join(".config/gh/hosts.yml").to_str().unwrap()]);
    assert_eq!(v["findings"][0]["source"], "home");
    let mut c = s.cmd(&["scan", "--home", "--json"]);
    c.env("HOME", &home);
    let r2 = s.run_with(c, None);
    let v2: serde_json::Value = serde_json::from_str(&r2.stdout).unwrap();
    assert_eq!((r2.code, &v2["findings"]), (1, &v["findings"]), "--home and --user-home are the same flag");
    // --git-history: a secret committed then removed
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@e.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&w)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    write(&w.join("ci.yml"), &format!("token: {GH}\n"));
    git(&["add", "."]);
    git(&["commit", "-qm", "oops"]);
    let commit = git(&["rev-parse", "HEAD"]);
    std::fs::remove_file(w.join("ci.yml")).unwrap();
    git(&["commit", "-qam", "remove"]);
    s.run(&["scan"]).ok();
    let r = s.run(&["scan", "--git-history", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["findings"][0]["commit"].as_str(), Some(commit.as_str()));
    assert_eq!(v["findings"][0]["source"], "git");
    let plain = s.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    s.run(&["scan", "--git-history", plain.to_str().unwrap()]).fails(2, "git");
}

#[test]
fn symlink_loops_and_unreadable_files_do_not_crash() {
    let s = Sandbox::new();
    let w = s.work();
    write(&w.join("d/a.txt"), "nothing\n");
    std::os::unix::fs::symlink(&w, w.join("d/loop")).unwrap();
    std::os::unix::fs::symlink(w.join("gone"), w.join("dangling")).unwrap();
    let r = s.run(&["scan"]).ok();
    assert!(r.stderr.contains("scanned"), "{}", r.stderr);
}

fn backup_id(stdout: &str) -> String {
    let line = stdout.lines().find(|l| l.starts_with("backup ")).unwrap_or_else(|| panic!("no backup line in {stdout}"));
    line.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned()
}

#[test]
fn fix_yes_round_trip_and_undo_restores_byte_identical() {
    let s = Sandbox::new();
    s.init();
    let w = s.work();
    let env_text = format!("# deploy settings\nGITHUB_TOKEN={GH}\nREGION=eu-west-1\n");
    let netrc_text = format!("machine api.example.com login me password {NETRC_PW}\nmachine other.example.com login you\n");
    let cfg_text = format!("{{\n  \"token\": \"{GH}\"\n}}\n");
    write(&w.join(".env"), &env_text);
    write(&w.join("home/.netrc"), &netrc_text);
    write(&w.join("conf/app.json"), &cfg_text);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(w.join(".env"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let rules = rules_file(&s);
    let rules = rules.to_str().unwrap();
    let r = s.run(&["scan", "--rules", rules, "--fix", "--yes", "--secret-env", "staging"]);
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(!r.stdout.contains(GH) && !r.stderr.contains(GH) && !r.stdout.contains(NETRC_PW));
    assert!(r.stdout.contains("moved   .env:2 github-pat-classic → airlock://secret/github_token (env staging)"), "{}", r.stdout);
    assert!(r.stdout.contains("removed home/.netrc:1 it-netrc-password"), "{}", r.stdout);
    // (a built-in netrc rule may report the same bytes too: one value, both fixed)
    let fixed = r.stdout.lines().find(|l| l.starts_with("fixed ")).unwrap();
    let words: Vec<&str> = fixed.split_whitespace().collect();
    assert_eq!(words[1], words[3], "{fixed}");
    assert!(words[1].parse::<u32>().unwrap() >= 3, "{fixed}");
    let id = backup_id(&r.stdout);
    assert!(r.stdout.contains(&format!("airlock scan --undo {id}")));

    // files: the value replaced by a reference, the netrc line gone, mode kept
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), "# deploy settings\nGITHUB_TOKEN=airlock://secret/github_token\nREGION=eu-west-1\n");
    assert_eq!(std::fs::read_to_string(w.join("home/.netrc")).unwrap(), "machine other.example.com login you\n");
    // the same value elsewhere is stored once and referenced by the same name
    assert_eq!(std::fs::read_to_string(w.join("conf/app.json")).unwrap(), "{\n  \"token\": \"airlock://secret/github_token\"\n}\n");
    assert_eq!(std::fs::metadata(w.join(".env")).unwrap().permissions().mode() & 0o777, 0o640);
    // the vault holds them; no plaintext in the state directory (backups included)
    let list = s.run(&["secret", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let names: Vec<(&str, &str, &str)> =
        v.as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["environment"].as_str().unwrap(), m["upstream"].as_str().unwrap())).collect();
    assert!(names.contains(&("github_token", "staging", "github")), "{names:?}");
    assert!(names.iter().any(|(n, e, _)| n.starts_with("it-netrc-password") && *e == "staging"), "{names:?}");
    assert_eq!(names.len(), 2, "{names:?}");
    let state = s.state_bytes();
    assert!(!contains(&state, GH) && !contains(&state, NETRC_PW), "plaintext secret in the state directory");
    let bdir = s.home().join("backups").join(&id);
    assert_eq!(std::fs::metadata(&bdir).unwrap().permissions().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(&bdir).unwrap() {
        assert_eq!(e.unwrap().metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
    // audited
    let audit = s.run(&["audit", "list", "--action", "scan.", "--json"]).ok();
    assert_eq!(audit.stdout.matches("\"scan.fix\"").count(), 3, "{}", audit.stdout);
    assert!(!audit.stdout.contains(GH));
    // clean now
    s.run(&["scan", "--rules", rules]).ok();
    s.run(&["scan", "--list-backups"]).ok();

    // undo restores byte-identical files
    let r = s.run(&["scan", "--undo", &id]).ok();
    assert!(r.stdout.contains("restored") && r.stdout.contains("airlock secret rm github_token --env staging"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), env_text);
    assert_eq!(std::fs::read_to_string(w.join("home/.netrc")).unwrap(), netrc_text);
    assert_eq!(std::fs::read_to_string(w.join("conf/app.json")).unwrap(), cfg_text);
    assert_eq!(std::fs::metadata(w.join(".env")).unwrap().permissions().mode() & 0o777, 0o640);
    // a second undo has nothing to do
    assert!(s.run(&["scan", "--undo", &id]).ok().stdout.contains("already restored"));
    s.run(&["scan", "--undo", "../../etc"]).fails(2, "not a backup id");
    s.run(&["scan", "--undo", "20000101T000000Z-0000"]).fails(2, "no backup");

    // a second fix collides with the stored name and gets a suffix
    let r = s.run(&["scan", "--fix", "--yes", "--secret-env", "staging", ".env"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("airlock://secret/github_token-2"), "{}", r.stdout);
}

#[test]
fn undo_refuses_files_changed_since_the_fix() {
    let s = Sandbox::new();
    s.init();
    let w = s.work();
    write(&w.join(".env"), &format!("RAILWAY_TOKEN=3f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9\nGH={GH}\n"));
    let r = s.run(&["scan", "--fix", "--yes", "--secret-env", "production", "--upstream", "railway", "--name-prefix", "app-", "--tier", "backup"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(w.join(".env")).unwrap();
    assert!(text.contains("RAILWAY_TOKEN=airlock://secret/app-railway_token"), "{text}");
    let list = s.run(&["secret", "list", "--json"]).ok();
    assert!(list.stdout.contains("\"tier\": \"backup\"") && list.stdout.contains("\"upstream\": \"railway\""), "{}", list.stdout);
    let id = backup_id(&r.stdout);
    std::fs::write(w.join(".env"), format!("{text}EDITED=1\n")).unwrap();
    s.run(&["scan", "--undo", &id]).fails(2, "changed since the fix");
    assert!(std::fs::read_to_string(w.join(".env")).unwrap().contains("EDITED=1"), "untouched");
    s.run(&["scan", "--undo", &id, "--force"]).ok();
    assert!(std::fs::read_to_string(w.join(".env")).unwrap().contains("3f1c9a7e-52b4"));
}

#[test]
fn fix_refuses_without_a_vault_or_confirmation() {
    let s = Sandbox::new();
    let w = s.work();
    let text = format!("GITHUB_TOKEN={GH}\n");
    write(&w.join(".env"), &text);
    // no terminal and no --yes
    s.run(&["scan", "--fix", "--secret-env", "staging"]).fails(2, "--yes");
    // no terminal and no --secret-env
    s.run(&["scan", "--fix", "--yes"]).fails(2, "--secret-env");
    s.run(&["scan", "--fix", "--yes", "--secret-env", "Not An Env"]).fails(2, "Not An Env");
    // state directory not initialised: the vault write cannot happen, the file stays
    s.run(&["scan", "--fix", "--yes", "--secret-env", "staging"]).fails(2, "airlock init");
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), text);
    assert!(!s.home().join("backups").exists());
    // a broken vault key: same
    s.init();
    std::fs::write(s.home().join("master.key"), "garbage").unwrap();
    let r = s.run(&["scan", "--fix", "--yes", "--secret-env", "staging"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), text);
}

#[test]
fn fix_leaves_history_and_environment_findings_with_advice() {
    let s = Sandbox::new();
    s.init();
    // only our variable: the test runner's own environment may hold anything
    let scrubbed = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env_clear().env("AIRLOCK_HOME", s.home()).env("NO_COLOR", "1").env("LEAKED_TOKEN", GH);
        c
    };
    let r = s.run_with(scrubbed(&["scan", "--env", "--fix", "--yes", "--secret-env", "staging"]), None);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("left    env:LEAKED_TOKEN") && r.stdout.contains("rotate"), "{}", r.stdout);
    assert!(r.stdout.contains("fixed 0 of 1 finding"), "{}", r.stdout);
    let r = s.run_with(scrubbed(&["scan", "--env", "--fix", "--yes", "--secret-env", "staging", "--json"]), None);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["fix"]["remaining"], 1);
    assert_eq!(v["fix"]["outcomes"][0]["action"], "not_fixed");
}

#[test]
fn pre_commit_hook_definition_points_at_the_command() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join(".pre-commit-hooks.yaml")).expect(".pre-commit-hooks.yaml at the repository root");
    assert!(text.contains("- id: airlock-scan"), "{text}");
    let entry = text.lines().find(|l| l.trim_start().starts_with("entry:")).expect("an entry line");
    assert!(entry.contains("airlock scan"), "{entry}");
    assert!(text.contains("pass_filenames: true"));
    // and the help teaches with examples and states the exit codes
    let s = Sandbox::new();
    let h = s.run(&["scan", "--help"]).ok();
    assert!(h.stdout.contains("Examples:") && h.stdout.contains("--fix") && h.stdout.contains("1 findings remain"), "{}", h.stdout);
}

/// Run `airlock ARGS` on a pseudo-terminal (util-linux `script`), typing `input`.
/// `None` when `script` is not installed.
fn on_tty(s: &Sandbox, args: &str, input: &str) -> Option<crate::Run> {
    let script = ["/usr/bin/script", "/bin/script"].into_iter().find(|p| Path::new(p).exists())?;
    let mut c = std::process::Command::new(script);
    c.args(["-qec", &format!("{} {args}", env!("CARGO_BIN_EXE_airlock")), "/dev/null"])
        .current_dir(s.work())
        .env("AIRLOCK_HOME", s.home())
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_PASSPHRASE")
        .env("NO_COLOR", "1");
    Some(s.run_with(c, Some(input)))
}

#[test]
fn fix_asks_on_a_terminal() {
    let s = Sandbox::new();
    s.init();
    let w = s.work();
    write(&w.join(".env"), &format!("A_TOKEN={GH}\nB_TOKEN={GH2}\n"));
    // environment asked once, then yes to the first, no to the second
    let Some(r) = on_tty(&s, "scan --fix --no-progress", "staging\ny\nn\n") else {
        eprintln!("skipped: `script` is not installed");
        return;
    };
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("environment the moved secrets belong to"), "{}", r.stdout);
    assert!(r.stdout.contains("into the vault as a_token? [y]es/[n]o/[a]ll/[q]uit"), "{}", r.stdout);
    assert!(!r.stdout.contains(GH) && !r.stdout.contains(GH2), "a prompt showed a raw value:\n{}", r.stdout);
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), format!("A_TOKEN=airlock://secret/a_token\nB_TOKEN={GH2}\n"));
    assert!(r.stdout.contains("fixed 1 of 2 findings"), "{}", r.stdout);
    // `a` moves the rest without asking again
    let r = on_tty(&s, "scan --fix --secret-env staging", "a\n").unwrap();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(w.join(".env")).unwrap(), "A_TOKEN=airlock://secret/a_token\nB_TOKEN=airlock://secret/b_token\n");
}

#[test]
fn fix_follows_symlinks_only_inside_the_scanned_paths_and_env_of_pid() {
    let s = Sandbox::new();
    s.init();
    let w = s.work();
    let outside = s.dir.path().join("outside.env");
    write(&outside, &format!("OUT_TOKEN={GH2}\n"));
    write(&w.join("config/real.env"), &format!("IN_TOKEN={GH}\n"));
    std::os::unix::fs::symlink(w.join("config/real.env"), w.join(".env")).unwrap();
    std::os::unix::fs::symlink(&outside, w.join("linked-out.env")).unwrap();
    let r = s.run(&["scan", "--fix", "--yes", "--secret-env", "dev"]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("linked-out.env:1 github-pat-classic: ") && r.stdout.contains("outside the scanned paths"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), format!("OUT_TOKEN={GH2}\n"), "a file outside the workspace was rewritten");
    assert!(std::fs::symlink_metadata(w.join(".env")).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(std::fs::read_to_string(w.join("config/real.env")).unwrap(), "IN_TOKEN=airlock://secret/in_token\n");

    // --env-of PID
    let mut child = std::process::Command::new("sleep").arg("30").env_clear().env("CHILD_TOKEN", GH).spawn().unwrap();
    let pid = child.id().to_string();
    let mut r = s.run(&["scan", "--env-of", &pid, "--json"]);
    for _ in 0..100 {
        if r.code != 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        r = s.run(&["scan", "--env-of", &pid, "--json"]);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(&format!("env[{pid}]:CHILD_TOKEN")), "{}", r.stdout);
    s.run(&["scan", "--env-of", "4294967290"]).fails(2, "environ");
}
