//! The built-in rules, each both ways, and their precedence.

use airlock_policy::{Decision, DenyCode, PolicyEngine, ids};
use airlock_types::{Capability, Tier};

use crate::fixture::{Case, NOW, env, grants};

fn engine() -> PolicyEngine {
    PolicyEngine::builtin().expect("built-in policies load")
}

#[track_caller]
fn assert_deny(d: &Decision, code: DenyCode, policy: &str) {
    match d {
        Decision::Deny { code: c, policies, reason } => {
            assert_eq!(*c, code, "reason: {reason}");
            assert!(policies.iter().any(|p| p == policy), "{policy} not in {policies:?}");
            assert!(!reason.is_empty());
        }
        other => panic!("expected Deny {code:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_allow(d: &Decision) {
    assert!(d.is_allow(), "expected Allow, got {d:?}");
    assert_eq!(d.policies(), [ids::PERMIT_GRANTED.to_owned()]);
    assert_eq!(d.code(), None);
}

#[test]
fn granted_read_in_own_environment_is_allowed() {
    assert_allow(&engine().decide(&Case::staging_read().request()));
}

#[test]
fn resource_in_another_environment_is_cross_environment() {
    let mut c = Case::staging_read();
    c.resource_env = env("production");
    c.resource_id = Some("vol-prod-db".into());
    let d = engine().decide(&c.request());
    assert_deny(&d, DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
    assert_eq!(d.code(), Some("cross_environment"));
    assert_eq!(d.reason().unwrap(), "task is bound to staging but resource \"vol-prod-db\" lives in production");
}

#[test]
fn staging_token_on_production_upstream_is_cross_environment() {
    let mut c = Case::staging_read();
    c.upstream = "railway-prod".into();
    c.upstream_env = env("production");
    c.resource_env = env("production");
    c.grants = grants(&["railway-prod:read"]);
    let d = engine().decide(&c.request());
    assert_deny(&d, DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
    let reason = d.reason().unwrap();
    assert!(reason.contains("upstream \"railway-prod\" serves production"), "{reason}");
    assert!(reason.contains("lives in production"), "{reason}");
}

#[test]
fn upstream_environment_alone_mismatching_is_cross_environment() {
    let mut c = Case::staging_read();
    c.upstream_env = env("dev");
    assert_deny(&engine().decide(&c.request()), DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
}

#[test]
fn expired_task_is_denied_and_live_one_is_not() {
    let e = engine();
    let mut c = Case::staging_read();
    c.expires_at = NOW;
    let d = e.decide(&c.request());
    assert_deny(&d, DenyCode::Expired, ids::TASK_EXPIRED);
    assert_eq!(d.code(), Some("expired"));
    c.expires_at = NOW + 1;
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn class_grants_cover_their_class_and_lower_only() {
    let e = engine();
    let cases = [
        ("railway-staging:read", Capability::Read, true),
        ("railway-staging:read", Capability::Write, false),
        ("railway-staging:read", Capability::Destroy, false),
        ("railway-staging:write", Capability::Read, true),
        ("railway-staging:write", Capability::Write, true),
        ("railway-staging:write", Capability::Destroy, false),
        ("railway-staging:destroy", Capability::Write, true),
        ("railway-staging:destroy", Capability::Destroy, true),
        // A grant for another upstream covers nothing here.
        ("github:destroy", Capability::Read, false),
    ];
    for (grant, capability, allowed) in cases {
        let mut c = Case::staging_read();
        c.grants = grants(&[grant]);
        c.capability = capability.clone();
        let d = e.decide(&c.request());
        if allowed {
            assert_allow(&d);
        } else {
            assert_deny(&d, DenyCode::NotGranted, ids::NOT_GRANTED);
            assert_eq!(d.code(), Some("not_granted"), "{grant} {capability}");
        }
    }
}

#[test]
fn named_grant_covers_exactly_that_operation() {
    let e = engine();
    let mut c = Case::staging_read();
    c.grants = grants(&["railway-staging:customDomainCreate"]);
    c.operation = "customDomainCreate".into();
    c.capability = Capability::Write;
    assert_allow(&e.decide(&c.request()));

    // The incident: a token for custom domains used for volumeDelete.
    c.operation = "volumeDelete".into();
    c.capability = Capability::Destroy;
    let d = e.decide(&c.request());
    assert_deny(&d, DenyCode::NotGranted, ids::NOT_GRANTED);
    let reason = d.reason().unwrap();
    assert!(reason.contains("\"volumeDelete\" (destroy)"), "{reason}");
    assert!(reason.contains("[railway-staging:customDomainCreate]"), "{reason}");
}

#[test]
fn operation_of_unknown_class_is_evaluated_as_destroy() {
    let e = engine();
    let mut c = Case::staging_read();
    c.operation = "mystery".into();
    c.capability = Capability::Operation("mystery".into());
    c.grants = grants(&["railway-staging:write"]);
    assert_deny(&e.decide(&c.request()), DenyCode::NotGranted, ids::NOT_GRANTED);
    c.grants = grants(&["railway-staging:destroy"]);
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn production_destroy_needs_approval_and_approval_lifts_it() {
    let e = engine();
    let mut c = Case::production("volumeDelete", Capability::Destroy, &["railway-prod:destroy"]);
    let d = e.decide(&c.request());
    match &d {
        Decision::NeedsApproval { reason, policies } => {
            assert_eq!(policies, &[ids::PRODUCTION_DESTROY_APPROVAL.to_owned()]);
            assert!(reason.contains("destroying resource \"vol-prod-db\" in production needs a human approval"), "{reason}");
        }
        other => panic!("expected NeedsApproval, got {other:?}"),
    }
    assert_eq!(d.code(), Some("approval_required"));
    c.approved = true;
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn non_destructive_production_and_staging_destroy_need_no_approval() {
    let e = engine();
    let c = Case::production("volumeUpdate", Capability::Write, &["railway-prod:write"]);
    assert_allow(&e.decide(&c.request()));
    let mut c = Case::staging_read();
    c.capability = Capability::Destroy;
    c.grants = grants(&["railway-staging:destroy"]);
    assert_allow(&e.decide(&c.request()));
    // prod-* variants count as production.
    let mut c = Case::production("volumeDelete", Capability::Destroy, &["railway-prod:destroy"]);
    c.task_env = env("prod-eu");
    c.upstream_env = env("prod-eu");
    c.resource_env = env("prod-eu");
    assert!(matches!(e.decide(&c.request()), Decision::NeedsApproval { .. }));
}

fn backup_case(grant_list: &[&str], purpose: Option<&str>) -> Case {
    let mut c = Case::staging_read();
    c.tier = Tier::Backup;
    c.resource_id = Some("bk-1".into());
    c.operation = "backupDelete".into();
    c.capability = Capability::Destroy;
    c.grants = grants(grant_list);
    c.purpose = purpose.map(str::to_owned);
    c
}

#[test]
fn backup_destroy_by_task_holding_destroy_grant_is_forbidden() {
    let e = engine();
    // Even with the backup-admin purpose, a destroy-class grant (here on another upstream) blocks it.
    for purpose in [None, Some("backup-admin: prune")] {
        let c = backup_case(&["railway-staging:backupDelete", "github:destroy"], purpose);
        let d = e.decide(&c.request());
        assert_deny(&d, DenyCode::BackupSeparation, ids::BACKUP_DESTROY_SEPARATION);
        assert_eq!(d.code(), Some("backup_separation"));
        assert!(d.reason().unwrap().contains("holds a destroy grant ([github:destroy])"), "{d:?}");
    }
}

#[test]
fn backup_destroy_needs_backup_admin_purpose() {
    let e = engine();
    for purpose in [None, Some("cleanup"), Some("backup-administrator")] {
        let c = backup_case(&["railway-staging:backupDelete"], purpose);
        let d = e.decide(&c.request());
        assert_deny(&d, DenyCode::BackupSeparation, ids::BACKUP_DESTROY_PURPOSE);
        assert!(d.reason().unwrap().contains("purpose starts with \"backup-admin\""), "{d:?}");
    }
    let c = backup_case(&["railway-staging:backupDelete"], Some("backup-admin: prune 2023 snapshots"));
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn backup_admin_task_may_not_destroy_primaries() {
    let e = engine();
    let mut c = backup_case(&["railway-staging:volumeDelete"], Some("backup-admin"));
    c.tier = Tier::Primary;
    c.operation = "volumeDelete".into();
    let d = e.decide(&c.request());
    assert_deny(&d, DenyCode::BackupSeparation, ids::BACKUP_ADMIN_NO_PRIMARY_DESTROY);
    // The same task may still read primaries.
    c.capability = Capability::Read;
    c.operation = "volumes".into();
    c.grants = grants(&["railway-staging:read"]);
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn reading_backups_is_not_restricted() {
    let mut c = backup_case(&["railway-staging:destroy"], None);
    c.capability = Capability::Read;
    c.operation = "backups".into();
    assert_allow(&engine().decide(&c.request()));
}

#[test]
fn production_backup_destroy_by_backup_admin_needs_approval() {
    let e = engine();
    let mut c = Case::production("backupDelete", Capability::Destroy, &["railway-prod:backupDelete"]);
    c.tier = Tier::Backup;
    c.purpose = Some("backup-admin".into());
    assert!(matches!(e.decide(&c.request()), Decision::NeedsApproval { .. }));
    c.approved = true;
    assert_allow(&e.decide(&c.request()));
}

#[test]
fn cross_environment_beats_approval() {
    let e = engine();
    // A staging task destroying a production volume through the shared endpoint.
    let mut c = Case::production("volumeDelete", Capability::Destroy, &["railway-staging:destroy"]);
    c.task_env = env("staging");
    c.upstream = "railway-staging".into();
    c.upstream_env = env("staging");
    for approved in [false, true] {
        c.approved = approved;
        let d = e.decide(&c.request());
        assert_deny(&d, DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
        assert!(!d.policies().iter().any(|p| p == ids::PRODUCTION_DESTROY_APPROVAL), "{d:?}");
    }
}

#[test]
fn not_granted_beats_approval() {
    let c = Case::production("volumeDelete", Capability::Destroy, &["railway-prod:read"]);
    assert_deny(&engine().decide(&c.request()), DenyCode::NotGranted, ids::NOT_GRANTED);
}

#[test]
fn the_incident_is_denied_with_every_broken_rule_named() {
    // Staging task, token "to add and remove custom domains", volumeDelete on a production volume.
    let mut c = Case::staging_read();
    c.grants = grants(&["railway-staging:customDomainCreate", "railway-staging:customDomainDelete"]);
    c.operation = "volumeDelete".into();
    c.capability = Capability::Destroy;
    c.resource_id = Some("vol-prod-db".into());
    c.resource_env = env("production");
    c.expires_at = NOW - 1;
    let d = engine().decide(&c.request());
    assert_deny(&d, DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
    assert_eq!(d.policies(), [ids::CROSS_ENVIRONMENT, ids::TASK_EXPIRED, ids::NOT_GRANTED].map(str::to_owned), "ordered by precedence");
    let reason = d.reason().unwrap();
    assert!(reason.starts_with("task is bound to staging but resource \"vol-prod-db\" lives in production; "), "{reason}");
}

#[test]
fn agent_controlled_strings_are_escaped_in_reasons() {
    let mut c = Case::staging_read();
    c.resource_env = env("production");
    c.resource_id = Some("vol\r\nX-Injected: 1".into());
    let d = engine().decide(&c.request());
    let reason = d.reason().unwrap();
    assert!(!reason.contains('\n') && !reason.contains('\r'), "{reason}");
    assert!(reason.contains(r#""vol\r\nX-Injected: 1""#), "{reason}");
}

#[test]
fn request_without_resource_id_uses_upstream_environment_facts() {
    let mut c = Case::staging_read();
    c.resource_id = None;
    assert_allow(&engine().decide(&c.request()));
    c.resource_env = env("production");
    let d = engine().decide(&c.request());
    assert_deny(&d, DenyCode::CrossEnvironment, ids::CROSS_ENVIRONMENT);
    assert!(d.reason().unwrap().contains("the resource of \"volumes\" lives in production"), "{d:?}");
}

#[test]
fn engine_is_shareable_across_threads() {
    let e = std::sync::Arc::new(engine());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || e.decide(&Case::staging_read().request()).is_allow())
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}
