//! The decision cache never changes an answer: every request, decided by the caching engine
//! (twice, in varying order and across seconds), gets exactly what a fresh evaluation gives.

use airlock_policy::PolicyEngine;
use airlock_types::{Capability, Tier};
use serde_json::json;

use crate::fixture::{Case, NOW, env, grants};

/// Each variant differs from the base in one input policy can see.
fn variants() -> Vec<Case> {
    type Edit = Box<dyn Fn(&mut Case)>;
    let edits: Vec<Edit> = vec![
        Box::new(|_| {}),
        Box::new(|c| c.agent = "other-agent".into()),
        Box::new(|c| c.task_id = "t-2".into()),
        Box::new(|c| c.task_env = env("production")),
        Box::new(|c| c.grants = grants(&["railway-staging:write"])),
        Box::new(|c| c.grants = grants(&[])),
        Box::new(|c| c.grants = grants(&["railway-staging:destroy", "railway-staging:read"])),
        Box::new(|c| c.purpose = Some("backup-admin".into())),
        Box::new(|c| c.purpose = Some(String::new())),
        Box::new(|c| c.expires_at = NOW + 2),
        Box::new(|c| c.expires_at = NOW - 1),
        Box::new(|c| c.upstream = "railway-prod".into()),
        Box::new(|c| c.upstream_env = env("production")),
        Box::new(|c| c.operation = "volumeDelete".into()),
        Box::new(|c| c.capability = Capability::Destroy),
        Box::new(|c| c.capability = Capability::Write),
        Box::new(|c| c.capability = Capability::Operation("read".into())),
        Box::new(|c| c.resource_id = None),
        Box::new(|c| c.resource_id = Some(String::new())),
        Box::new(|c| c.resource_env = env("production")),
        Box::new(|c| c.tier = Tier::Backup),
        Box::new(|c| c.approved = true),
        Box::new(|c| c.arguments = Some(json!({"path": "/etc/shadow"}))),
        Box::new(|c| c.arguments = Some(json!({"path": "/work/x"}))),
        Box::new(|c| {
            c.capability = Capability::Destroy;
            c.operation = "volumeDelete".into();
            c.grants = grants(&["railway-staging:destroy"]);
        }),
        Box::new(|c| {
            c.capability = Capability::Destroy;
            c.grants = grants(&["railway-prod:destroy"]);
            c.task_env = env("production");
            c.upstream_env = env("production");
            c.resource_env = env("production");
        }),
    ];
    edits
        .iter()
        .map(|edit| {
            let mut c = Case::staging_read();
            edit(&mut c);
            c
        })
        .collect()
}

fn check(files: &[std::path::PathBuf]) {
    let cached = PolicyEngine::with_files(files).unwrap();
    let fresh = PolicyEngine::with_files(files).unwrap().without_decision_cache();
    let cases = variants();
    // Seconds go forwards, repeat, and go backwards (a clock step): the cache must follow.
    for now in [NOW, NOW, NOW + 1, NOW + 3, NOW + 3, NOW - 5, NOW + 10] {
        for round in 0..2 {
            let order: Vec<usize> = if round == 0 { (0..cases.len()).collect() } else { (0..cases.len()).rev().collect() };
            for i in order {
                let c = Case { now, ..clone_case(&cases[i]) };
                assert_eq!(cached.decide(&c.request()), fresh.decide(&c.request()), "variant {i} at now={now} round {round}");
            }
        }
    }
}

fn clone_case(c: &Case) -> Case {
    Case {
        agent: c.agent.clone(),
        task_id: c.task_id.clone(),
        task_env: c.task_env.clone(),
        grants: c.grants.clone(),
        purpose: c.purpose.clone(),
        expires_at: c.expires_at,
        upstream: c.upstream.clone(),
        upstream_env: c.upstream_env.clone(),
        operation: c.operation.clone(),
        capability: c.capability.clone(),
        resource_id: c.resource_id.clone(),
        resource_env: c.resource_env.clone(),
        tier: c.tier,
        approved: c.approved,
        now: c.now,
        arguments: c.arguments.clone(),
    }
}

#[test]
fn builtin_policies_cached_equal_fresh() {
    check(&[]);
}

/// Operator policies that look at the clock, at whether arguments exist, and at the
/// arguments themselves (those requests bypass the cache).
#[test]
fn time_and_argument_policies_cached_equal_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.cedar");
    std::fs::write(
        &file,
        format!(
            r#"@id("freeze")
@reason("change freeze")
forbid (principal, action == Airlock::Action::"read", resource) when {{ context.now >= {freeze} && context.now < {thaw} }};

@id("no-args-on-destroy")
forbid (principal, action == Airlock::Action::"destroy", resource) when {{ context.has_arguments }};

@id("no-etc")
forbid (principal, action, resource)
when {{ context.has_arguments && context.arguments.hasTag("path") && context.arguments.getTag("path") like "/etc/*" }};
"#,
            freeze = NOW + 1,
            thaw = NOW + 4
        ),
    )
    .unwrap();
    check(std::slice::from_ref(&file));
    // The clock policy really bites at NOW + 1 and not at NOW, through the cache.
    let e = PolicyEngine::with_files(&[file]).unwrap();
    let mut c = Case::staging_read();
    assert!(e.decide(&c.request()).is_allow());
    c.now = NOW + 1;
    assert_eq!(e.decide(&c.request()).policies(), ["freeze".to_owned()]);
    c.now = NOW + 4;
    assert!(e.decide(&c.request()).is_allow());
}
