//! `airlock demo --broker`: a guided run of the broker in a throw-away state directory.
//!
//! It drives this very binary, step by step, showing each command as a user
//! would type it: init, store a secret (value on stdin), start a task, verify
//! its token, narrow it for a sub-agent, try to widen it, end the task and watch
//! the token die. It exits 0 only if every protection held.

use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use crate::app::{CmdResult, Failure, color};

struct Step<'a> {
    exe: &'a Path,
    home: &'a Path,
    ok: bool,
}

impl Step<'_> {
    /// Run `airlock ARGS` with optional stdin; print it; return (exit code, stdout).
    fn run(&self, args: &[&str], stdin: Option<&str>, shown_stdin: &str) -> Result<(i32, String), Failure> {
        let shown = format!("$ airlock {}{}", args.join(" "), shown_stdin);
        if color() {
            println!("\x1b[36m{shown}\x1b[0m");
        } else {
            println!("{shown}");
        }
        let mut child = Command::new(self.exe)
            .args(args)
            .env("AIRLOCK_HOME", self.home)
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_MASTER_KEY")
            .env_remove("AIRLOCK_PASSPHRASE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::internal(format!("cannot run {}: {e}", self.exe.display())))?;
        if let Some(s) = stdin {
            child.stdin.take().expect("piped").write_all(s.as_bytes()).map_err(|e| Failure::internal(e.to_string()))?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().map_err(|e| Failure::internal(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in stdout.lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
            let line = if line.starts_with("alk_") { format!("{}… ({} bytes)", &line[..24], line.len()) } else { line.to_owned() };
            println!("    {line}");
        }
        Ok((out.status.code().unwrap_or(-1), stdout))
    }

    fn expect(&mut self, what: &str, held: bool) {
        let (mark, word) = if held { ("✔", "held") } else { ("✘", "FAILED") };
        println!("  {mark} {what}: {word}\n");
        self.ok &= held;
    }
}

/// The broker walkthrough; `keep` keeps the temporary state directory.
pub fn run(keep: bool) -> CmdResult {
    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot find the airlock binary: {e}")))?;
    let tmp = tempfile::Builder::new().prefix("airlock-demo-").tempdir().map_err(|e| Failure::internal(e.to_string()))?;
    let home = tmp.path().join("state");
    let mut s = Step { exe: &exe, home: &home, ok: true };
    println!("airlock demo — the broker core, in a temporary state directory {}\n", home.display());

    let (code, _) = s.run(&["init"], None, "")?;
    s.expect("state directory created 0700 with keys 0600", code == 0);

    let fake = "ghp_demoDemoDemoDemoDemoDemoDemoDemo0000";
    let (code, _) = s.run(&["secret", "add", "github-staging", "--env", "staging", "--tier", "primary", "--upstream", "github"], Some(fake), " < token.txt")?;
    s.expect("secret stored encrypted; its value never appeared on the command line", code == 0);
    let (_, listing) = s.run(&["secret", "list", "--json"], None, "")?;
    s.expect("listing shows metadata only, never the value", !listing.contains(fake) && listing.contains("github-staging"));
    let db = std::fs::read(home.join("airlock.db")).unwrap_or_default();
    s.expect("the database file holds no plaintext secret", !db.windows(fake.len()).any(|w| w == fake.as_bytes()));

    let (code, token) =
        s.run(&["task", "start", "--agent", "coder", "--env", "staging", "--grant", "github:write", "--ttl", "30m", "--purpose", "demo"], None, "")?;
    let token = token.trim().to_owned();
    s.expect("task token minted: bound to agent, task, environment, grants, 30 min", code == 0 && token.starts_with("alk_"));

    let (code, _) = s.run(&["token", "verify"], Some(&token), " < task.token")?;
    s.expect("the gateway's check accepts the token", code == 0);

    let (code, child) = s.run(&["token", "attenuate", "--grant", "github:read", "--ttl", "5m"], Some(&token), " < task.token")?;
    let child = child.trim().to_owned();
    s.expect("a sub-agent gets a narrower token (read only, 5 min), offline", code == 0 && child.starts_with("alk_"));

    let (code, _) = s.run(&["token", "attenuate", "--grant", "github:destroy"], Some(&child), " < child.token")?;
    s.expect("widening a narrowed token is refused", code != 0);

    let mut forged = token.clone().into_bytes();
    let i = forged.len() - 30;
    forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
    let (code, _) = s.run(&["token", "verify"], Some(&String::from_utf8_lossy(&forged)), " < tampered.token")?;
    s.expect("a tampered token is refused", code != 0);

    let (_, tasks) = s.run(&["task", "list", "--json"], None, "")?;
    let id = serde_json::from_str::<serde_json::Value>(&tasks).ok().and_then(|v| v[0]["id"].as_str().map(str::to_owned)).unwrap_or_default();
    let (code, _) = s.run(&["task", "end", &id], None, "")?;
    s.expect("task ended", code == 0);
    let (c1, _) = s.run(&["token", "verify"], Some(&token), " < task.token")?;
    let (c2, _) = s.run(&["token", "verify"], Some(&child), " < child.token")?;
    s.expect("the task's token and its narrowed child are both revoked", c1 == 4 && c2 == 4);

    let (code, _) = s.run(&["audit", "verify"], None, "")?;
    s.expect("audit log hash chain intact", code == 0);
    s.run(&["audit", "list"], None, "")?;

    if keep {
        let kept = tmp.keep();
        println!("state kept in {}", kept.display());
    }
    if s.ok {
        println!("every protection held.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::internal("a protection did not hold (see ✘ above)"))
    }
}
