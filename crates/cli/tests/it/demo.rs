//! Issue 6: `airlock demo`, the incident replay, run as a user runs it.
//!
//! The real binary starts the fixture API, the scripted agent (without, then with airlock),
//! `airlock serve` and `airlock run` as child processes; the demo checks the fixture's state
//! itself and exits 0 only if every protection held.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Run;

fn demo(args: &[&str]) -> (Run, std::time::Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("demo")
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run =
        Run { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() };
    (run, started.elapsed())
}

/// The line of the verdict that starts with `mark` and names `what`.
fn verdict<'a>(r: &'a Run, mark: &str, what: &str) -> Option<&'a str> {
    r.stdout.lines().find(|l| l.trim_start().starts_with(mark) && l.contains(what))
}

#[test]
fn demo_replays_the_incident_and_every_protection_holds() {
    let (r, took) = demo(&[]);
    let all = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, 0, "airlock demo failed\n{all}");
    eprintln!("airlock demo took {took:?}");

    // Run 1 is not vacuous: without airlock, production and its backups are gone.
    assert!(r.stdout.contains("Run 1 — without airlock"), "{all}");
    let destroyed = r.stdout.lines().find(|l| l.starts_with("Destroyed in ")).unwrap_or_else(|| panic!("no destruction report\n{all}"));
    for id in ["vol-prod-db", "bkp-prod-db-1", "bkp-prod-db-2"] {
        assert!(destroyed.contains(id), "run 1 did not destroy {id}: {destroyed}\n{all}");
    }
    assert!(verdict(&r, "✔", "the replay is real").is_some(), "{all}");

    // Run 2: each protection, by its machine-readable code.
    assert!(r.stdout.contains("Run 2 — with airlock"), "{all}");
    assert!(verdict(&r, "✔", "the preflight scan refuses").is_some(), "{all}");
    assert!(verdict(&r, "✔", "moved the token into the vault").is_some(), "{all}");
    assert!(verdict(&r, "✔", "staging reads pass").is_some(), "{all}");
    let prod = verdict(&r, "✔", "production volume is denied as cross-environment").unwrap_or_else(|| panic!("{all}"));
    assert!(prod.contains("cross_environment"), "{prod}");
    let approval = verdict(&r, "✔", "waits for a human approval").unwrap_or_else(|| panic!("{all}"));
    assert!(approval.contains("approval_required"), "{approval}");
    let backup = verdict(&r, "✔", "backup/primary separation").unwrap_or_else(|| panic!("{all}"));
    assert!(backup.contains("backup_separation"), "{backup}");
    let intact = verdict(&r, "✔", "nothing in production is lost").unwrap_or_else(|| panic!("{all}"));
    assert!(intact.contains("bkp-prod-db-1, bkp-prod-db-2") && intact.contains("destroyed: none"), "{intact}");
    assert!(verdict(&r, "✔", "no delete request reached the cloud API").is_some(), "{all}");
    assert!(verdict(&r, "✘", "").is_none(), "a check failed\n{all}");

    // The audit trail of the run, with the gateway's decisions.
    let trail = r.stdout.split("The audit trail of the run").nth(1).unwrap_or_else(|| panic!("no audit trail\n{all}"));
    assert!(trail.contains("gateway.request") && trail.contains("denied"), "{trail}");
    assert!(
        trail.contains("cross_environment: task is bound to staging") && trail.contains("backup_separation: ") && trail.contains("approval_required: "),
        "{trail}"
    );
    assert!(trail.contains("hash chain verified"), "{trail}");
    assert!(r.stdout.contains("Every protection held."), "{all}");
}

#[test]
fn demo_fails_naming_the_protections_that_did_not_hold() {
    let (r, _) = demo(&["--disable-protections"]);
    let all = format!("stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, 1, "the demo must fail when protections are off\n{all}");
    assert!(r.stderr.contains("protection(s) did not hold"), "{all}");
    assert!(r.stderr.contains("deleting the production volume is denied as cross-environment"), "{all}");
    assert!(r.stderr.contains("nothing in production is lost"), "{all}");
    assert!(verdict(&r, "✘", "nothing in production is lost").is_some(), "{all}");
    assert!(!r.stdout.contains("Every protection held."), "{all}");
}
