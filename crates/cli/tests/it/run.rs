//! `airlock run` against real children — sandbox, scrubbed environment, revocation on
//! every way out, exit codes, preflight, network restriction (issues 6 and 10).
//!
//! Unless a test asks for another `--network`, the agent runs with `--network none` (no
//! gateway is started here); `ways_out.rs` covers the gateway-only default.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Run, Sandbox};

const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzAWSSECRET";
const DOTENV_TOKEN: &str = "3f1c9a7e52b44d0e9a61c8e2f0b7d4a9";

/// An initialised installation with a fake `$HOME` holding credential files. The home is
/// under /var/tmp, not /tmp, as a real one is outside the temp dirs: in the agent's private
/// /tmp a home under /tmp would be hidden by the tmpfs before Landlock is even asked.
pub(crate) struct Agent {
    pub(crate) s: Sandbox,
    home: tempfile::TempDir,
}

impl Agent {
    pub(crate) fn new() -> Self {
        let s = Sandbox::new();
        s.init();
        let home_dir = tempfile::Builder::new().prefix("airlock-test-home-").tempdir_in("/var/tmp").unwrap();
        let home = home_dir.path().join("home");
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(home.join(".aws/credentials"), format!("[default]\naws_secret_access_key = {AWS_SECRET}\n")).unwrap();
        std::fs::write(home.join(".ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        std::fs::write(home.join(".netrc"), "machine example.com login me password pw\n").unwrap();
        Self { s, home: home_dir }
    }
    pub(crate) fn home(&self) -> PathBuf {
        self.home.path().join("home")
    }
    /// `airlock run --env staging --grant github:read [extra] -- sh -c SCRIPT`, with
    /// `--network none` (or `open` with `--no-sandbox`) unless `extra` names a network.
    pub(crate) fn cmd(&self, extra: &[&str], script: &str) -> Command {
        let mut args = vec!["run", "--env", "staging", "--grant", "github:read"];
        if !extra.contains(&"--network") {
            args.extend_from_slice(&["--network", if extra.contains(&"--no-sandbox") { "open" } else { "none" }]);
        }
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "sh", "-c", script]);
        let mut c = self.s.cmd(&args);
        c.env("HOME", self.home());
        c
    }
    pub(crate) fn run(&self, extra: &[&str], script: &str) -> Run {
        self.s.run_with(self.cmd(extra, script), None)
    }
    pub(crate) fn token_file(&self) -> PathBuf {
        self.s.work().join("token")
    }
    /// `airlock token verify` on the token the child saved.
    pub(crate) fn verify_saved_token(&self) -> Run {
        let tok = std::fs::read_to_string(self.token_file()).expect("the child saved its token");
        assert!(tok.trim().starts_with("alk_"), "not a task token: {tok:?}");
        self.s.run_stdin(&["token", "verify"], &tok)
    }
    pub(crate) fn assert_revoked(&self) {
        self.verify_saved_token().fails(4, "revoked");
    }
}

fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() || std::fs::read_to_string(path).unwrap_or_default().trim().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host pid of the process whose command line is `sleep MARKER`.
pub(crate) fn host_pid_of(marker: &str) -> u32 {
    let t = Instant::now();
    loop {
        if let Some(pid) = find_pid(marker) {
            return pid;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no process `sleep {marker}`");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn find_pid(marker: &str) -> Option<u32> {
    let want = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let zombie = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')));
        (cmd == want.as_bytes() && !zombie).then_some(pid)
    })
}

fn kill(sig: &str, pid: u32) {
    let st = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn credential_files_and_state_dir_are_unreadable_but_workspace_is_writable() {
    let a = Agent::new();
    let state = a.s.home();
    let script = format!(
        r#"cat "{home}/.aws/credentials"; echo "aws=$?"
cat "{home}/.ssh/id_ed25519"; echo "ssh=$?"
cat "{home}/.netrc"; echo "netrc=$?"
ls "{home}"; echo "home=$?"
ls "{state}"; echo "statedir=$?"
cat "{state}/token.key"; echo "tokenkey=$?"
cat "{state}/airlock.db" > /dev/null; echo "db=$?"
ls -l /proc/self/fd/
echo written > out.txt && cat out.txt
echo tmp > "${{TMPDIR:-/tmp}}/t" && cat "${{TMPDIR:-/tmp}}/t"
echo agent-home > "$HOME/note" && cat "$HOME/note" && echo "agenthome=$HOME"
"#,
        state = state.display(),
        home = a.home().display()
    );
    let r = a.run(&[], &script).ok();
    for probe in ["aws=1", "ssh=1", "netrc=1", "home=2", "tokenkey=1", "db=1"] {
        assert!(r.stdout.contains(probe), "{probe} missing\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
    }
    assert!(r.stderr.matches("Permission denied").count() >= 4, "{}", r.stderr);
    // Without the private /tmp, Landlock alone refuses the state directory too.
    let l = a.run(&["--isolation", "landlock"], &script).ok();
    assert!(l.stdout.contains("statedir=2") && l.stdout.contains("tokenkey=1"), "{}", l.stdout);
    assert!(l.stderr.matches("Permission denied").count() >= 7, "{}", l.stderr);
    // The state directory (here under /tmp) is either unreadable or, in the agent's private
    // /tmp, only the path down to its agent home: no key, no database.
    for f in ["token.key", "master.key", "airlock.db", "admin.token"] {
        assert!(!r.stdout.contains(f), "{f} visible\n{}", r.stdout);
    }
    assert!(!r.stdout.contains(AWS_SECRET) && !r.stderr.contains(AWS_SECRET));
    assert!(!r.stdout.contains("PRIVATE KEY"));
    // No inherited descriptor leads into the state directory.
    let fds: String = r.stdout.lines().filter(|l| !l.starts_with("agenthome=")).collect();
    assert!(!fds.contains(&state.display().to_string()), "{}", r.stdout);
    assert!(r.stdout.contains("written\n") && r.stdout.contains("tmp\n"), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(a.s.work().join("out.txt")).unwrap(), "written\n");
    assert!(r.stderr.contains("Landlock ABI"), "{}", r.stderr);
    // The agent's home is its own, in the state directory's agents/ part, and writable.
    let agent_home = state.join("agents/sh/home");
    assert!(r.stdout.contains(&format!("agenthome={}", std::fs::canonicalize(&agent_home).unwrap().display())), "{}", r.stdout);
    assert_eq!(std::fs::read_to_string(agent_home.join("note")).unwrap(), "agent-home\n");
    // The supervisor itself is not sandboxed: it still reads the state dir afterwards.
    a.s.run(&["audit", "verify"]).ok();
}

#[test]
fn scrubbed_variables_are_absent_and_ordinary_ones_remain() {
    let a = Agent::new();
    let mut c = a.cmd(&["--keep-env", "NPM_TOKEN"], "env");
    c.env("GITHUB_TOKEN", "ghp_notreallyatoken")
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("OPENAI_API_KEY", "sk-scrubme")
        .env("DB_PASSWORD", "pw-scrubme")
        .env("AIRLOCK_MASTER_KEY", "mk-scrubme")
        .env("AIRLOCK_PASSPHRASE", "pp-scrubme")
        .env("INNOCENT_LOOKING", "AKIAIOSFODNN7EXAMPLQ")
        .env("NPM_TOKEN", "npm-kept-on-purpose")
        .env("ORDINARY_SETTING", "kept-value")
        .env("LANG", "C.UTF-8");
    let r = a.s.run_with(c, None).ok();
    let vars: Vec<&str> = r.stdout.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
    for gone in [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "OPENAI_API_KEY",
        "DB_PASSWORD",
        "AIRLOCK_MASTER_KEY",
        "AIRLOCK_PASSPHRASE",
        "AIRLOCK_HOME",
        "INNOCENT_LOOKING",
    ] {
        assert!(!vars.contains(&gone), "{gone} reached the agent\n{}", r.stdout);
        assert!(r.stderr.contains(gone), "{gone} not reported as removed\n{}", r.stderr);
    }
    for kept in ["ORDINARY_SETTING=kept-value", "LANG=C.UTF-8", "NPM_TOKEN=npm-kept-on-purpose"] {
        assert!(r.stdout.lines().any(|l| l == kept), "{kept} missing\n{}", r.stdout);
    }
    assert!(r.stdout.lines().any(|l| l.starts_with("AIRLOCK_TOKEN=alk_")), "{}", r.stdout);
    // Names only: no removed value appears in airlock's own output.
    for v in ["ghp_notreallyatoken", AWS_SECRET, "sk-scrubme", "pw-scrubme", "mk-scrubme", "AKIAIOSFODNN7EXAMPLQ"] {
        assert!(!r.stderr.contains(v), "value {v} printed\n{}", r.stderr);
    }
    // The deliberate keep is audited.
    let audit = a.s.run(&["audit", "list", "--action", "run.keep_env", "--json"]).ok();
    assert!(audit.stdout.contains("NPM_TOKEN") && !audit.stdout.contains("npm-kept-on-purpose"), "{}", audit.stdout);
}

#[test]
fn exit_code_passes_through_and_token_is_revoked_after_normal_exit() {
    let a = Agent::new();
    let r = a.run(&[], r#"echo "$AIRLOCK_TOKEN" > token; exit 42"#);
    assert_eq!(r.code, 42, "{}", r.stderr);
    assert!(r.stderr.contains("exited with code 42") && r.stderr.contains("token is revoked"), "{}", r.stderr);
    assert!(r.stderr.contains("gateway requests: none"), "{}", r.stderr);
    a.assert_revoked();
    let r = a.run(&[], "true").ok();
    assert!(r.stdout.is_empty());
    // Every run is audited from start to end.
    let audit = a.s.run(&["audit", "list", "--action", "run.", "--json"]).ok();
    assert_eq!(audit.stdout.matches("\"run.start\"").count(), 2, "{}", audit.stdout);
    assert_eq!(audit.stdout.matches("\"run.end\"").count(), 2, "{}", audit.stdout);
}

#[test]
fn token_is_revoked_after_the_child_is_killed() {
    let a = Agent::new();
    let pidfile = a.s.work().join("pid");
    let mut c = a.cmd(&[], r#"echo "$AIRLOCK_TOKEN" > token; echo $$ > pid; exec sleep 30.101"#);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for(&pidfile);
    wait_for(&a.token_file());
    a.verify_saved_token().ok();
    // In its own PID namespace the agent's $$ is not the host's pid: find it by its command line.
    let pid = host_pid_of("30.101");
    kill("-9", pid);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("killed by signal 9"), "{stderr}");
    a.assert_revoked();
}

/// Signal airlock (not the agent) and check the agent got it and the token died.
fn signal_airlock(sig: &str) {
    let a = Agent::new();
    let ready = a.s.work().join("ready");
    let script = format!(r#"echo "$AIRLOCK_TOKEN" > token; trap 'echo got-{sig}; exit 7' {sig}; echo 1 > ready; while :; do sleep 0.05; done"#);
    let mut c = a.cmd(&[], &script);
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    wait_for(&ready);
    a.verify_saved_token().ok();
    kill(&format!("-{sig}"), child.id());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(7), "{sig}: {stdout}\n{stderr}");
    assert!(stdout.contains(&format!("got-{sig}")), "the child did not receive the forwarded {sig}: {stdout}");
    assert!(stderr.contains("token is revoked"), "{stderr}");
    a.assert_revoked();
}

#[test]
fn token_is_revoked_after_sigterm_to_airlock_and_the_signal_is_forwarded() {
    signal_airlock("TERM");
}

#[test]
fn sigint_and_sighup_to_airlock_are_forwarded_too() {
    signal_airlock("INT");
    signal_airlock("HUP");
}

#[test]
fn the_agent_cannot_signal_its_supervisor() {
    let a = Agent::new();
    // With namespaces the supervisor has no pid the agent could name; its sandbox's init
    // (pid 1) ignores what the agent sends. The agent is told the supervisor's host pid.
    // Without namespaces Landlock's signal scope refuses it; its parent (the sandbox's init,
    // outside the Landlock domain too) is refused the same way in both modes.
    let sup = a.s.work().join("sup");
    for extra in [&[][..], &["--isolation", "landlock"][..]] {
        let _ = std::fs::remove_file(&sup);
        let mut c = a.cmd(extra, r#"echo "$AIRLOCK_TOKEN" > token; while [ ! -s sup ]; do sleep 0.01; done; kill -KILL "$(cat sup)"; echo "kill=$?"; kill -KILL $PPID; echo "parent=$?"; sleep 0.2; echo survived"#);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        std::fs::write(&sup, child.id().to_string()).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("kill=1") && stdout.contains("parent=1") && stdout.contains("survived"),
            "{extra:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{extra:?}");
        a.assert_revoked();
    }
}

#[test]
fn preflight_refuses_a_gitignored_dotenv_and_allow_findings_overrides() {
    let a = Agent::new();
    std::fs::write(a.s.work().join(".gitignore"), ".env\n").unwrap();
    std::fs::write(a.s.work().join(".env"), format!("# staging\nRAILWAY_TOKEN={DOTENV_TOKEN}\n")).unwrap();
    let r = a.run(&[], "echo agent-ran").fails(5, "airlock scan --fix");
    assert!(r.stderr.contains(".env:2"), "{}", r.stderr);
    assert!(!r.stdout.contains("agent-ran"), "the agent must not start");
    assert!(!r.stderr.contains(DOTENV_TOKEN), "the finding's value was printed");
    let tasks = a.s.run(&["task", "list", "--all", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&tasks.stdout).unwrap().as_array().unwrap().len(), 0, "no task on refusal");

    let r = a.run(&["--allow-findings"], "echo agent-ran").ok();
    assert!(r.stdout.contains("agent-ran"));
    let audit = a.s.run(&["audit", "list", "--action", "run.", "--json"]).ok();
    assert!(audit.stdout.contains("run.refused") && audit.stdout.contains("run.allow_findings"), "{}", audit.stdout);
    assert!(!audit.stdout.contains(DOTENV_TOKEN));
}

#[test]
fn a_kept_variable_with_a_credential_value_is_a_finding() {
    let a = Agent::new();
    let mut c = a.cmd(&["--keep-env", "GITHUB_TOKEN"], "echo agent-ran");
    c.env("GITHUB_TOKEN", "ghp_0123456789abcdefghijABCDEFGHIJ012345");
    let r = a.s.run_with(c, None).fails(5, "environment variable GITHUB_TOKEN");
    assert!(!r.stdout.contains("agent-ran"));
    assert!(!r.stderr.contains("ghp_0123456789"));
}

/// A listener that answers every connection with an HTTP 404, as the gateway would.
pub(crate) fn fake_gateway(ip: &str) -> std::net::TcpListener {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    let c = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for mut s in c.incoming().flatten() {
            std::thread::spawn(move || {
                let mut b = [0u8; 512];
                let _ = s.read(&mut b);
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
            });
        }
    });
    l
}

#[test]
fn gateway_only_network_reaches_the_gateway_and_nothing_else() {
    let a = Agent::new();
    let gateway = fake_gateway("127.0.0.1");
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (gp, op) = (gateway.local_addr().unwrap().port(), other.local_addr().unwrap().port());
    let script = format!(
        r#"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{gp}' && echo gateway=ok
bash -c 'exec 3<>/dev/tcp/127.0.0.1/{op}' || echo other=blocked"#
    );
    let gw = format!("127.0.0.1:{gp}");
    // The default: the agent's own network namespace with the gateway relayed in.
    let r = a.run(&["--network", "gateway-only", "--gateway", &gw], &script).ok();
    assert!(r.stdout.contains("gateway=ok"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("other=blocked"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("network+pid+mount namespaces"), "{}", r.stderr);
    // Without namespaces: Landlock's port rule refuses it.
    let r = a.run(&["--network", "gateway-only", "--isolation", "landlock", "--gateway", &gw], &script).ok();
    assert!(r.stdout.contains("gateway=ok") && r.stdout.contains("other=blocked"), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    assert!(r.stderr.contains("not covered without namespaces"), "{}", r.stderr);
    // With --network open the same connection works, and the opt-out is audited.
    let r = a.run(&["--network", "open"], &script).ok();
    assert!(!r.stdout.contains("other=blocked"), "{}", r.stdout);
    assert!(r.stderr.contains("--network open"), "{}", r.stderr);
    let audit = a.s.run(&["audit", "list", "--action", "run.network_open", "--json"]).ok();
    assert!(audit.stdout.contains("run.network_open"), "{}", audit.stdout);
}

#[test]
fn a_gateway_that_does_not_answer_refuses_the_run_with_the_command_that_starts_it() {
    let a = Agent::new();
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let r = a.run(&["--network", "gateway-only", "--gateway", &gone], "echo agent-ran").fails(1, "does not answer");
    assert!(r.stderr.contains("airlock serve") && r.stderr.contains("--network none"), "{}", r.stderr);
    assert!(!r.stdout.contains("agent-ran"));
    let tasks = a.s.run(&["task", "list", "--all", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&tasks.stdout).unwrap().as_array().unwrap().len(), 0, "no task when the gateway is down");
}

#[test]
fn unsafe_workspaces_and_grants_are_refused() {
    let a = Agent::new();
    let home = a.home();
    a.run(&["--workspace", home.to_str().unwrap()], "true").fails(2, "home directory");
    a.run(&["--workspace", a.s.home().to_str().unwrap()], "true").fails(2, "state directory");
    a.run(&["--allow-read", home.join(".ssh").to_str().unwrap()], "true").fails(2, "~/.ssh");
    a.run(&["--no-sandbox", "--network", "gateway-only"], "true").fails(2, "--network open");
    a.run(&["--allow-write", home.to_str().unwrap()], "true").fails(2, "--allow-write");
    a.run(&["--allow-write", a.s.home().to_str().unwrap()], "true").fails(2, "--allow-write");
    a.run(&["--agent-home", home.join(".ssh").to_str().unwrap()], "true").fails(2, "--agent-home");
    let tasks = a.s.run(&["task", "list", "--all", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&tasks.stdout).unwrap().as_array().unwrap().len(), 0);
}

#[test]
fn no_sandbox_is_audited_and_reads_everything() {
    let a = Agent::new();
    let r = a.run(&["--no-sandbox"], r#"cat "$HOME/.netrc" > /dev/null && echo readable"#).ok();
    assert!(r.stdout.contains("readable") && r.stderr.contains("--no-sandbox"), "{}", r.stderr);
    let audit = a.s.run(&["audit", "list", "--action", "run.no_sandbox", "--json"]).ok();
    assert!(audit.stdout.contains("run.no_sandbox"), "{}", audit.stdout);
}

#[test]
fn the_trampoline_refuses_to_run_outside_a_supervisor() {
    let s = Sandbox::new();
    s.run(&["__sandbox-exec", "--supervisor", "1", "--no-sandbox", "--", "echo", "ran"]).fails(125, "supervisor is gone");
    s.run(&["__sandbox-exec", "--supervisor", "1", "--", "echo", "ran"]).fails(2, "--spec");
}

#[test]
fn a_missing_program_is_reported_and_the_task_still_ends() {
    let a = Agent::new();
    let mut c = a.s.cmd(&["run", "--env", "staging", "--grant", "github:read", "--network", "none", "--", "/nonexistent/agent"]);
    c.env("HOME", a.home());
    let r = a.s.run_with(c, None);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("token is revoked"), "{}", r.stderr);
    let tasks = a.s.run(&["task", "list", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&tasks.stdout).unwrap().as_array().unwrap().len(), 0, "no active task left");
}

#[test]
fn the_agent_dies_with_a_killed_supervisor() {
    // SIGKILL cannot be caught, so airlock cannot revoke here (the token expires with its
    // TTL); what it can do is make sure the agent does not run on unsupervised.
    let a = Agent::new();
    let pidfile = a.s.work().join("pid");
    let mut c = a.cmd(&[], "echo $$ > pid; exec sleep 30.202");
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    wait_for(&pidfile);
    let pid = host_pid_of("30.202");
    let running = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    assert!(running(pid));
    kill("-9", child.id());
    child.wait().unwrap();
    let t = Instant::now();
    while running(pid) {
        assert!(t.elapsed() < Duration::from_secs(5), "the agent outlived its supervisor");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_daemon_the_agent_forks_dies_with_the_task() {
    let a = Agent::new();
    // The agent starts a detached daemon and exits at once.
    let r = a.run(&[], r#"echo "$AIRLOCK_TOKEN" > token; setsid sleep 30.303 < /dev/null > /dev/null 2>&1 & sleep 0.2; echo started"#).ok();
    assert!(r.stdout.contains("started"), "{}", r.stderr);
    a.assert_revoked();
    let t = Instant::now();
    while find_pid("30.303").is_some() {
        assert!(t.elapsed() < Duration::from_secs(5), "the daemon outlived its task");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

#[test]
fn a_secret_only_in_git_history_refuses_the_run_with_the_way_to_remove_it() {
    let a = Agent::new();
    let w = a.s.work();
    git(&w, &["init", "-q"]);
    std::fs::write(w.join(".env"), format!("RAILWAY_TOKEN={DOTENV_TOKEN}\n")).unwrap();
    git(&w, &["add", ".env"]);
    git(&w, &["commit", "-q", "-m", "oops"]);
    git(&w, &["rm", "-q", ".env"]);
    git(&w, &["commit", "-q", "-m", "remove it"]);
    assert!(!w.join(".env").exists());
    let r = a.run(&[], "git log -p | grep -c RAILWAY_TOKEN; echo agent-ran").fails(5, "git history");
    assert!(!r.stdout.contains("agent-ran"), "the agent must not start");
    assert!(r.stderr.contains("filter-repo") && r.stderr.contains("rotate"), "{}", r.stderr);
    assert!(!r.stderr.contains(DOTENV_TOKEN));
}

#[test]
fn the_incidents_token_shape_under_any_credential_name_refuses_the_run() {
    let a = Agent::new();
    for (name, value) in [("CLOUD_TOKEN", "6f1c9a7e-52b4-4d0e-9a61-c8e2f0b7d4a9"), ("API_TOKEN", "0b5e6c1d-3a2f-4e8b-9c7d-1f2e3a4b5c6d")] {
        std::fs::write(a.s.work().join(".env"), format!("{name}={value}\n")).unwrap();
        let r = a.run(&[], "echo agent-ran").fails(5, ".env:1");
        assert!(!r.stdout.contains("agent-ran") && !r.stderr.contains(value), "{name}: {}", r.stderr);
    }
    // A placeholder or a reference is not a secret.
    std::fs::write(a.s.work().join(".env"), "CLOUD_TOKEN=${CLOUD_TOKEN}\nAPI_TOKEN=<your-token>\n").unwrap();
    a.run(&[], "echo agent-ran").ok();
}

#[test]
fn vendored_findings_are_listed_but_do_not_refuse() {
    let a = Agent::new();
    let dir = a.s.work().join("node_modules/some-pkg/test");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fixture.env"), format!("RAILWAY_TOKEN={DOTENV_TOKEN}\n")).unwrap();
    let r = a.run(&[], "echo agent-ran").ok();
    assert!(r.stdout.contains("agent-ran"), "{}", r.stderr);
    assert!(r.stderr.contains("do not refuse") && r.stderr.contains("node_modules"), "{}", r.stderr);
    assert!(!r.stderr.contains(DOTENV_TOKEN));
}

#[test]
fn rules_inside_the_workspace_and_unknown_grants_are_refused() {
    let a = Agent::new();
    // A config the agent could rewrite (it sits in its workspace).
    let cfg = a.s.work().join("airlock.toml");
    std::fs::write(&cfg, "[[upstream]]\nname = \"github\"\nbase_url = \"https://api.github.com\"\nenvironment = \"staging\"\nsecret = \"gh\"\ninject = { header = \"Authorization\", format = \"token {secret}\" }\n").unwrap();
    let mut c = a.cmd(&[], "echo agent-ran");
    c.env("AIRLOCK_CONFIG", &cfg);
    let r = a.s.run_with(c, None).fails(2, "could rewrite its own rules");
    assert!(!r.stdout.contains("agent-ran"));
    // The same config outside the workspace: grants are checked against it.
    let etc = a.s.dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::rename(&cfg, etc.join("airlock.toml")).unwrap();
    for (grant, suggestion) in [("githb:read", "github:read"), ("github:reed", "github:read")] {
        let mut c = a.s.cmd(&["run", "--env", "staging", "--grant", grant, "--network", "none", "--", "true"]);
        c.env("HOME", a.home()).env("AIRLOCK_CONFIG", etc.join("airlock.toml"));
        let r = a.s.run_with(c, None).fails(2, "unknown_grant");
        assert!(r.stderr.contains(suggestion), "{grant}: {}", r.stderr);
    }
    let tasks = a.s.run(&["task", "list", "--all", "--json"]).ok();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&tasks.stdout).unwrap().as_array().unwrap().len(), 0);
}

#[test]
fn a_program_symlinked_into_a_credential_store_is_refused_not_opened() {
    let a = Agent::new();
    let tool = a.home().join(".ssh/tool");
    std::fs::write(&tool, "#!/bin/sh\necho tool-ran\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&tool, a.s.work().join("tool")).unwrap();
    let mut c = a.s.cmd(&["run", "--env", "staging", "--grant", "github:read", "--network", "none", "--", "./tool"]);
    c.env("HOME", a.home());
    let r = a.s.run_with(c, None).fails(2, "~/.ssh");
    assert!(!r.stdout.contains("tool-ran"));
    assert!(r.stderr.contains("the agent's program needs"), "{}", r.stderr);
}

#[test]
fn an_agent_that_fails_on_a_refused_path_is_told_the_flag_that_allows_it() {
    let a = Agent::new();
    let tool = a.home().join(".local-tool");
    std::fs::create_dir_all(&tool).unwrap();
    std::fs::write(tool.join("config"), "x\n").unwrap();
    let r = a.run(&[], &format!("cat {}/config", tool.display()));
    assert_eq!(r.code, 1, "{}", r.stderr);
    // The agent's own message passes through, and airlock's last line names the path and flag.
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);
    let last = r.stderr.lines().last().unwrap();
    assert!(last.contains(&format!("--allow-read {}/config", tool.display())), "{last}");
    // With the flag the same command works.
    a.run(&["--allow-read", tool.to_str().unwrap()], &format!("cat {}/config", tool.display())).ok();
}

/// The private /tmp must not hide airlock itself: an airlock installed (or built) under /tmp
/// still starts its sandbox's last stage (found by the start-up benchmark).
#[test]
fn an_airlock_binary_under_tmp_still_starts_the_sandbox() {
    let a = Agent::new();
    let dir = tempfile::Builder::new().prefix("airlock-bin-").tempdir_in("/tmp").unwrap();
    let bin = dir.path().join("airlock");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_airlock"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_airlock"), &bin).unwrap();
    }
    let mut c = Command::new(&bin);
    c.args(["run", "--env", "staging", "--grant", "github:read", "--network", "none", "--", "sh", "-c", "echo inside"])
        .current_dir(a.s.work())
        .env("AIRLOCK_HOME", a.s.home())
        .env("HOME", a.home())
        .env_remove("AIRLOCK_CONFIG");
    let r = a.s.run_with(c, None).ok();
    assert!(r.stdout.contains("inside"), "{}", r.stderr);
    assert!(r.stderr.contains("network+pid+mount namespaces"), "{}", r.stderr);
}

/// The unprivileged path (a user namespace mapping the caller's uid, mount capability passed
/// by the ambient set, the default state directory ~/.local/share/airlock): CI runs as root,
/// so this test drops to an unprivileged uid with `setpriv` when it can. As a normal user
/// every other test here already takes that path.
#[test]
fn an_unprivileged_user_gets_the_same_sandbox() {
    use std::os::unix::fs::PermissionsExt as _;
    if !rustix::process::getuid().is_root() {
        // Not root: the rest of this file runs unprivileged already; check the mapping here.
        let a = Agent::new();
        let r = a.run(&[], "id -u; grep CapEff /proc/self/status").ok();
        assert!(r.stdout.contains("CapEff:\t0000000000000000"), "{}", r.stdout);
        return;
    }
    let home = tempfile::Builder::new().prefix("airlock-nobody-").tempdir_in("/var/tmp").unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("ws")).unwrap();
    std::fs::create_dir_all(h.join(".ssh")).unwrap();
    std::fs::write(h.join(".ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    for p in [h.to_path_buf(), h.join("ws"), h.join(".ssh"), h.join(".ssh/id_ed25519")] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(h, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_airlock")).args(args);
        c.current_dir(h.join("ws")).env_clear().env("HOME", h).env("PATH", "/usr/bin:/bin").env("LANG", "C.UTF-8");
        c.stdin(Stdio::null()).output().unwrap()
    };
    let init = as_nobody(&["init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let out = as_nobody(&[
        "run",
        "--env",
        "staging",
        "--grant",
        "github:read",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        &format!(
            "id -u; grep CapEff /proc/self/status; ls /proc | grep -c '^[0-9]'; cat {}/.ssh/id_ed25519; echo ssh=$?; echo t > /tmp/t && echo tmp-ok; touch $HOME/x && echo home=$HOME",
            h.display()
        ),
    ]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("65534\n"), "the agent keeps the user's uid: {stdout}");
    assert!(stdout.contains("CapEff:\t0000000000000000") && stdout.contains("ssh=1") && stdout.contains("tmp-ok"), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("home={}/.local/share/airlock/agents/sh/home", h.display())), "{stdout}");
    assert!(stderr.contains("network+pid+mount namespaces"), "{stderr}");
}

/// Run `airlock run --env staging --grant github:read --network none -- <agent>` on a real
/// pseudo-terminal (Python's `pty`), drive it with `steps` (Python statements using
/// `read(until)`, `os.write(fd, …)` and `buf`), and return what the steps print.
fn on_a_terminal(a: &Agent, agent: &[&str], steps: &str) -> String {
    let script = format!(
        r#"
import os, pty, time, select
pid, fd = pty.fork()
if pid == 0:
    os.environ.update({{"AIRLOCK_HOME": {state:?}, "HOME": {home:?}, "PS1": "$ "}})
    os.chdir({work:?})
    os.execv({bin:?}, ["airlock", "run", "--env", "staging", "--grant", "github:read", "--network", "none", "--"] + {agent})
buf = b""
def read(until):
    global buf
    end = time.time() + 15
    while time.time() < end and until not in buf:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                return
{steps}
"#,
        state = a.s.home().display().to_string(),
        home = a.home().display().to_string(),
        work = a.s.work().display().to_string(),
        bin = env!("CARGO_BIN_EXE_airlock"),
        agent = serde_json::to_string(agent).unwrap(),
    );
    let out = Command::new("python3").arg("-c").arg(&script).output().unwrap();
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One Ctrl-C on the terminal is one SIGINT for the agent: the agent is in the terminal's
/// foreground process group with airlock and its sandbox stages, so none of them may pass
/// it on again (an agent that exits on a second Ctrl-C would otherwise exit on the first).
#[test]
fn one_ctrl_c_on_a_terminal_is_one_sigint() {
    let a = Agent::new();
    let agent = ["sh", "-c", "trap 'echo got-INT' INT; echo ready; i=0; while [ $i -lt 40 ]; do sleep 0.1; i=$((i+1)); done; echo done"];
    let out = on_a_terminal(
        &a,
        &agent,
        "read(b\"ready\")\nos.write(fd, b\"\\x03\")\nread(b\"done\")\nprint(\"count\", buf.count(b\"got-INT\"), \"done\", b\"done\" in buf)",
    );
    assert!(out.contains("count 1 done True"), "{out}");
}

/// An interactive shell with job control on a terminal (it moves itself into a process
/// group of its own) runs, keeps its jobs, and its exit code comes back: the sandbox's init
/// reaps any child, not only its own process group's (it reported "the agent vanished").
#[test]
fn an_interactive_shell_with_job_control_works_on_a_terminal() {
    let a = Agent::new();
    let steps = r#"read(b"$ ")
os.write(fd, b"sleep 30 &\njobs; kill %1; echo marker-$((6*7)); exit 3\n")
read(b"token is revoked")
_, status = os.waitpid(pid, 0)
print("exit", os.waitstatus_to_exitcode(status), "marker", b"marker-42" in buf, "running", b"Running" in buf)
print(buf.decode(errors="replace")[-800:])"#;
    let out = on_a_terminal(&a, &["bash", "--norc", "-i"], steps);
    assert!(out.starts_with("exit 3 marker True running True"), "{out}");
}
