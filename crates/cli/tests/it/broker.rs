//! Issue 2: state directory, vault, task tokens — and their bad inputs.

use std::os::unix::fs::PermissionsExt;

use crate::{Sandbox, contains};

const VALUE: &str = "ghp_IntegrationTestValue0123456789abcdef";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_creates_private_state_and_refuses_to_overwrite() {
    let s = Sandbox::new();
    s.run(&["init"]).ok();
    assert_eq!(mode(&s.home()), 0o700);
    for f in ["master.key", "token.key", "admin.token", "airlock.db"] {
        assert_eq!(mode(&s.home().join(f)), 0o600, "{f}");
    }
    let key_before = std::fs::read(s.home().join("master.key")).unwrap();
    s.run(&["init"]).fails(3, "refusing to overwrite");
    assert_eq!(std::fs::read(s.home().join("master.key")).unwrap(), key_before, "key untouched");
    s.run(&["doctor"]).ok();
}

#[test]
fn default_state_dir_is_never_the_working_directory() {
    let s = Sandbox::new();
    let home = s.dir.path().join("userhome");
    let mut c = s.cmd(&["init", "--json"]);
    c.env_remove("AIRLOCK_HOME").env_remove("XDG_DATA_HOME").env("HOME", &home);
    let r = s.run_with(c, None).ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["state_dir"].as_str().unwrap(), home.join(".local/share/airlock").to_str().unwrap());
    assert!(std::fs::read_dir(s.work()).unwrap().next().is_none(), "nothing written to the working directory");
    let xdg = s.dir.path().join("xdg");
    let mut c = s.cmd(&["init", "--json"]);
    c.env_remove("AIRLOCK_HOME").env("XDG_DATA_HOME", &xdg);
    let r = s.run_with(c, None).ok();
    assert!(r.stdout.contains(xdg.join("airlock").to_str().unwrap()));
}

#[test]
fn missing_state_dir_says_run_init() {
    let s = Sandbox::new();
    s.run(&["secret", "list"]).fails(3, "airlock init");
    s.run(&["task", "list"]).fails(3, "airlock init");
    s.run(&["doctor"]).fails(3, "airlock init");
    let mut c = s.cmd(&["secret", "list"]);
    c.env("AIRLOCK_HOME", "relative/dir");
    s.run_with(c, None).fails(2, "absolute");
}

#[test]
fn loose_permissions_are_refused_naming_the_path() {
    let s = Sandbox::new();
    s.init();
    std::fs::set_permissions(s.home().join("master.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    s.run(&["secret", "list"]).fails(3, "master.key");
    let d = s.run(&["doctor"]);
    assert_ne!(d.code, 0);
    assert!(d.stdout.contains("chmod 600"), "{}", d.stdout);
    std::fs::set_permissions(s.home().join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(s.home(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.run(&["task", "list"]).fails(3, "0755");
}

#[test]
fn secrets_come_from_stdin_or_file_and_never_leak() {
    let s = Sandbox::new();
    s.init();
    let r = s
        .run_stdin(
            &["secret", "add", "gh", "--env", "staging", "--tier", "primary", "--upstream", "github", "--description", "CI token"],
            &format!("{VALUE}\n"),
        )
        .ok();
    assert!(!r.stdout.contains(VALUE) && !r.stderr.contains(VALUE));
    let file = s.dir.path().join("v.txt");
    std::fs::write(&file, "second-value-xyz").unwrap();
    s.run(&["secret", "add", "gh", "--env", "production", "--upstream", "github", "--from-file", file.to_str().unwrap()]).ok();
    let list = s.run(&["secret", "list", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["name"], "gh");
    assert!(!list.stdout.contains(VALUE) && !list.stdout.contains("second-value-xyz"));
    // There is no flag that takes a value on the command line.
    s.run(&["secret", "add", "x", "--env", "staging", "--upstream", "github", "--value", VALUE]).fails(2, "--value");
    // Nothing under the state directory holds the plaintext; neither does the audit log.
    assert!(!contains(&s.state_bytes(), VALUE));
    let audit = s.run(&["audit", "list", "--json"]).ok();
    assert!(audit.stdout.contains("secret.add") && !audit.stdout.contains(VALUE));
}

#[test]
fn secret_bad_inputs() {
    let s = Sandbox::new();
    s.init();
    let add = |name: &str, env: &str, value: &str| s.run_stdin(&["secret", "add", name, "--env", env, "--upstream", "github"], value);
    add("gh", "staging", "v1").ok();
    add("gh", "staging", "v2").fails(2, "already exists in environment \"staging\"");
    add("empty", "staging", "").fails(2, "empty secret");
    add("empty", "staging", "\n").fails(2, "empty secret");
    add("gh", "Prod!", "v").fails(2, "invalid environment");
    add("bad name", "staging", "v").fails(2, "invalid secret name");
    s.run_stdin(&["secret", "add", "t", "--env", "staging", "--tier", "gold", "--upstream", "github"], "v").fails(2, "invalid tier");
    s.run(&["secret", "add", "f", "--env", "staging", "--upstream", "github", "--from-file", "/nonexistent/file"]).fails(2, "/nonexistent/file");
    s.run_stdin(&["secret", "rotate", "nope"], "v").fails(1, "no secret named \"nope\"");
    s.run(&["secret", "rm", "nope"]).fails(1, "no secret named");
    add("gh", "production", "v3").ok();
    s.run_stdin(&["secret", "rotate", "gh"], "v4").fails(2, "several environments");
    let r = s.run_stdin(&["secret", "rotate", "gh", "--env", "staging", "--json"], "v4").ok();
    assert!(r.stdout.contains("\"version\": 2"));
    s.run(&["secret", "rm", "gh", "--env", "staging"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&s.run(&["secret", "list", "--json"]).stdout).unwrap().as_array().unwrap().len(), 1);
}

#[test]
fn wrong_master_key_is_named_not_mistaken_for_corruption() {
    let s = Sandbox::new();
    s.init();
    s.run_stdin(&["secret", "add", "gh", "--env", "staging", "--upstream", "github"], VALUE).ok();
    let mut c = s.cmd(&["secret", "rotate", "gh"]);
    c.env("AIRLOCK_MASTER_KEY", "00".repeat(32));
    s.run_with(c, Some("new")).fails(4, "wrong master key");
    let mut c = s.cmd(&["secret", "rotate", "gh"]);
    c.env("AIRLOCK_MASTER_KEY", "not-a-key");
    s.run_with(c, Some("new")).fails(4, "AIRLOCK_MASTER_KEY");
    // Replace the key file with another valid key: also a wrong key.
    std::fs::remove_file(s.home().join("master.key")).unwrap();
    std::fs::write(s.home().join("master.key"), format!("{}\n", "11".repeat(32))).unwrap();
    std::fs::set_permissions(s.home().join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    s.run_stdin(&["secret", "rotate", "gh"], "new").fails(4, "master.key does not match");
}

#[test]
fn passphrase_vault() {
    let s = Sandbox::new();
    let mut c = s.cmd(&["init", "--passphrase"]);
    c.env("AIRLOCK_PASSPHRASE", "short");
    s.run_with(c, None).fails(4, "at least 12");
    let s = Sandbox::new();
    let mut c = s.cmd(&["init", "--passphrase"]);
    c.env("AIRLOCK_PASSPHRASE", "correct horse battery staple");
    s.run_with(c, None).ok();
    assert!(!s.home().join("master.key").exists(), "no key file in passphrase mode");
    let mut c = s.cmd(&["secret", "add", "gh", "--env", "staging", "--upstream", "github"]);
    c.env("AIRLOCK_PASSPHRASE", "correct horse battery staple");
    s.run_with(c, Some(VALUE)).ok();
    let mut c = s.cmd(&["secret", "rotate", "gh"]);
    c.env("AIRLOCK_PASSPHRASE", "wrong horse battery staple");
    s.run_with(c, Some("v")).fails(4, "passphrase is not the one");
    s.run_stdin(&["secret", "rotate", "gh"], "v").fails(4, "passphrase");
}

#[tokio::test]
async fn corrupted_ciphertext_names_the_secret() {
    let s = Sandbox::new();
    s.init();
    s.run_stdin(&["secret", "add", "alpha", "--env", "staging", "--upstream", "github"], "value-a").ok();
    s.run_stdin(&["secret", "add", "beta", "--env", "staging", "--upstream", "github"], "value-b").ok();
    {
        use airlock_store::Store;
        let store = airlock_store::SqliteStore::open(&s.home().join("airlock.db")).await.unwrap();
        let a = store.get_secret("alpha", "staging").await.unwrap().unwrap();
        let mut b = store.get_secret("beta", "staging").await.unwrap().unwrap();
        // Copy alpha's sealed material onto beta's row.
        b.wrapped_key = a.wrapped_key.clone();
        b.nonce = a.nonce.clone();
        b.ciphertext = a.ciphertext.clone();
        store.replace_secret(&b, b.version).await.unwrap();
    }
    s.run_stdin(&["secret", "rotate", "beta"], "new").fails(1, "secret \"beta\" (environment staging) cannot be decrypted");
    s.run_stdin(&["secret", "rotate", "alpha"], "new").ok();
}

#[test]
fn tasks_and_tokens_end_to_end() {
    let s = Sandbox::new();
    s.init();
    let r = s
        .run(&[
            "task",
            "start",
            "--agent",
            "coder",
            "--env",
            "staging",
            "--grant",
            "github:write",
            "--grant",
            "railway-staging:read",
            "--ttl",
            "30m",
            "--purpose",
            "fix CI",
            "--json",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    let verified = s.run_stdin(&["token", "verify", "--json"], &token).ok();
    let claims: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(claims["task_id"], id.as_str());
    assert_eq!(claims["environment"], "staging");
    assert_eq!(claims["grants"], serde_json::json!(["github:write", "railway-staging:read"]));
    s.run_stdin(&["token", "inspect"], &token).ok();
    let listed = s.run(&["task", "list", "--json"]).ok();
    assert!(listed.stdout.contains(&id) && !listed.stdout.contains(&token), "listings never show tokens");
    s.run(&["task", "show", &id]).ok();
    s.run(&["task", "show", "nope"]).fails(1, "no task with id");

    // Attenuate: narrower works, wider fails.
    let child = s.run_stdin(&["token", "attenuate", "--grant", "github:read", "--ttl", "5m"], &token).ok().stdout.trim().to_owned();
    assert!(child.starts_with("alk_"));
    s.run_stdin(&["token", "verify"], &child).ok();
    s.run_stdin(&["token", "attenuate", "--grant", "github:write"], &child).fails(4, "token widened");
    s.run_stdin(&["token", "attenuate", "--ttl", "2h"], &child).fails(4, "token widened");
    s.run_stdin(&["token", "attenuate", "--grant", "gitlab:read"], &token).fails(4, "token widened");
    s.run_stdin(&["token", "attenuate"], &token).fails(2, "nothing to narrow");

    // Forged, truncated, garbage.
    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 40;
    forged[i] = if forged[i] == b'x' { b'y' } else { b'x' };
    s.run_stdin(&["token", "verify"], std::str::from_utf8(&forged).unwrap()).fails(4, "token");
    s.run_stdin(&["token", "verify"], &token[..token.len() / 2]).fails(4, "token");
    s.run_stdin(&["token", "verify"], "sk-live-not-ours").fails(4, "alk_");
    s.run_stdin(&["token", "verify"], "").fails(2, "no token");
    // A token from another installation is forged as far as we are concerned.
    let other = Sandbox::new();
    other.init();
    let foreign = other.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "github:read"]).ok().stdout.trim().to_owned();
    s.run_stdin(&["token", "verify"], &foreign).fails(4, "different airlock installation");
    // Tokens are never accepted as arguments.
    s.run(&["token", "verify", &token]).fails(2, "unexpected argument");

    // End the task: the token and its child are revoked.
    s.run(&["task", "end", &id]).ok();
    s.run_stdin(&["token", "verify"], &token).fails(4, "revoked");
    s.run_stdin(&["token", "verify"], &child).fails(4, "revoked");
    let j = s.run_stdin(&["token", "verify", "--json"], &child);
    assert_eq!(j.code, 4);
    assert!(j.stdout.contains("\"error\": \"token_revoked\""));
    s.run(&["task", "end", &id]).ok().stdout.contains("already ended");
    s.run(&["task", "end", "no-such-task"]).fails(1, "no task with id");
    s.run(&["audit", "verify"]).ok();
}

#[test]
fn expired_tokens_are_refused() {
    let s = Sandbox::new();
    s.init();
    let token = s.run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "github:read", "--ttl", "1s"]).ok().stdout.trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    s.run_stdin(&["token", "verify"], &token).fails(4, "expired");
    let inspected = s.run_stdin(&["token", "inspect"], &token).ok();
    assert!(inspected.stdout.contains("expired"));
}

#[test]
fn task_bad_inputs() {
    let s = Sandbox::new();
    s.init();
    let start = |extra: &[&str]| {
        let mut args = vec!["task", "start", "--agent", "a"];
        args.extend_from_slice(extra);
        s.run(&args)
    };
    start(&["--env", "staging", "--grant", "github:read", "--ttl", "9h"]).fails(2, "above the maximum of 8h");
    start(&["--env", "staging", "--grant", "github:read", "--ttl", "0s"]).fails(2, "greater than zero");
    start(&["--env", "staging", "--grant", "github:read", "--ttl", "forever"]).fails(2, "not a duration");
    start(&["--env", "Staging", "--grant", "github:read"]).fails(2, "invalid environment");
    start(&["--env", "staging", "--grant", "github"]).fails(2, "UPSTREAM:CAPABILITY");
    start(&["--env", "staging"]).fails(2, "--grant");
    // The cap comes from configuration.
    let cfg = s.dir.path().join("airlock.toml");
    // (With a configuration, grants are checked against it: github must be an upstream.)
    std::fs::write(&cfg, "[broker]\nmax_ttl = \"1h\"\n\n[[upstream]]\nname = \"github\"\nbase_url = \"https://api.github.com\"\nenvironment = \"staging\"\nsecret = \"gh\"\ninject = { header = \"Authorization\", format = \"token {secret}\" }\n").unwrap();
    let mut c = s.cmd(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "github:read", "--ttl", "2h"]);
    c.env("AIRLOCK_CONFIG", &cfg);
    s.run_with(c, None).fails(2, "maximum of 1h");
    std::fs::write(&cfg, "[broker]\nmax_ttl = 5\n").unwrap();
    let mut c = s.cmd(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "github:read"]);
    c.env("AIRLOCK_CONFIG", &cfg);
    s.run_with(c, None).fails(2, "max_ttl");
    let r = s.run(&["task", "list", "--json", "--all"]).ok();
    assert_eq!(r.stdout.trim(), "[]", "refused requests record nothing");
}

#[test]
fn tampered_audit_log_is_detected() {
    let s = Sandbox::new();
    s.init();
    s.run_stdin(&["secret", "add", "gh", "--env", "staging", "--upstream", "github"], "v").ok();
    s.run(&["audit", "verify"]).ok();
    let db = s.home().join("airlock.db");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE audit SET outcome='denied' WHERE seq=2\"); c.commit()",
            db.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    s.run(&["audit", "verify"]).fails(1, "audit record 2");
}

#[test]
fn broker_demo_passes() {
    // The broker walkthrough (`airlock demo --broker`); the incident replay has its own
    // tests in demo.rs.
    let s = Sandbox::new();
    let r = s.run(&["demo", "--broker"]).ok();
    assert!(r.stdout.contains("every protection held"));
    assert!(!r.stdout.contains("✘"));
}

/// The same broker flow on PostgreSQL (what several gateway replicas share).
#[test]
fn broker_on_postgres() {
    let url = std::env::var("AIRLOCK_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("cli_{}_{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos());
    let created = std::process::Command::new("psql").args([url.as_str(), "-qc", &format!("CREATE SCHEMA {schema}")]).status().expect("psql is installed");
    assert!(created.success(), "PostgreSQL at {url} is required");
    let db = format!("{url}?options=-c%20search_path%3D{schema}");
    let s = Sandbox::new();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = s.cmd(args);
        c.env("AIRLOCK_DATABASE_URL", &db);
        s.run_with(c, stdin)
    };
    run(&["init"], None).ok();
    assert!(!s.home().join("airlock.db").exists(), "no SQLite file when PostgreSQL is configured");
    run(&["secret", "add", "gh", "--env", "staging", "--upstream", "github"], Some(VALUE)).ok();
    let token = run(&["task", "start", "--agent", "a", "--env", "staging", "--grant", "github:read"], None).ok().stdout.trim().to_owned();
    run(&["token", "verify"], Some(&token)).ok();
    let id = run(&["token", "inspect", "--json"], Some(&token)).ok().stdout;
    let id = serde_json::from_str::<serde_json::Value>(&id).unwrap()["task_id"].as_str().unwrap().to_owned();
    run(&["task", "end", &id], None).ok();
    run(&["token", "verify"], Some(&token)).fails(4, "revoked");
    run(&["audit", "verify"], None).ok();
    let rows = std::process::Command::new("psql").args([url.as_str(), "-tAc", &format!("SELECT count(*) FROM {schema}.audit")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&rows.stdout).trim(), "4", "init, secret.add, task.start and task.end are recorded in PostgreSQL");
    let mut c = s.cmd(&["task", "list"]);
    c.env("AIRLOCK_DATABASE_URL", "mysql://nope");
    s.run_with(c, None).fails(2, "postgres://");
}
