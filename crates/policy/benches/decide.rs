//! Time one `PolicyEngine::decide` with the built-in policies, entity construction included.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use airlock_policy::{PolicyEngine, Request};
use airlock_types::{Capability, Environment, Grant, Tier};
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn decide(c: &mut Criterion) {
    let engine = PolicyEngine::builtin().expect("built-in policies load");
    let staging: Environment = "staging".parse().unwrap();
    let production: Environment = "production".parse().unwrap();
    let grants: Vec<Grant> = ["railway-staging:read", "railway-staging:customDomainCreate", "github:write"].iter().map(|g| g.parse().unwrap()).collect();
    let base = Request {
        agent: "claude",
        task_id: "t-0193",
        task_environment: &staging,
        grants: &grants,
        purpose: Some("fix the login bug"),
        expires_at: 1_700_003_600,
        upstream: "railway-staging",
        upstream_environment: &staging,
        operation: "volumes",
        capability: &Capability::Read,
        resource_id: Some("vol-staging-db"),
        resource_environment: &staging,
        resource_tier: Tier::Primary,
        approved: false,
        now: 1_700_000_000,
        arguments: None,
    };
    assert!(engine.decide(&base).is_allow());
    c.bench_function("decide/allow_read", |b| b.iter(|| engine.decide(black_box(&base))));

    let cross = Request { resource_environment: &production, operation: "volumeDelete", capability: &Capability::Destroy, ..base };
    assert_eq!(engine.decide(&cross).code(), Some("cross_environment"));
    c.bench_function("decide/deny_cross_environment", |b| b.iter(|| engine.decide(black_box(&cross))));

    let prod_grants: Vec<Grant> = vec!["railway-prod:destroy".parse().unwrap()];
    let approval = Request {
        task_environment: &production,
        upstream_environment: &production,
        resource_environment: &production,
        upstream: "railway-prod",
        grants: &prod_grants,
        operation: "volumeDelete",
        capability: &Capability::Destroy,
        ..base
    };
    assert_eq!(engine.decide(&approval).code(), Some("approval_required"));
    c.bench_function("decide/needs_approval", |b| b.iter(|| engine.decide(black_box(&approval))));
}

criterion_group!(benches, decide);
criterion_main!(benches);
