//! Operator policy files: added forbids, diagnostics with file:line, schema validation,
//! the disable list, approvals and arguments.

use std::path::{Path, PathBuf};

use airlock_policy::{Decision, DenyCode, Error, PolicyConfig, PolicyEngine, check_config, check_files, ids};
use airlock_types::Capability;
use serde_json::json;

use crate::fixture::{Case, env, grants};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn invalid_report(err: Error) -> airlock_policy::CheckReport {
    match err {
        Error::Invalid(report) => *report,
        other => panic!("expected Error::Invalid, got {other}"),
    }
}

fn staging_destroy() -> Case {
    let mut c = Case::staging_read();
    c.operation = "volumeDelete".into();
    c.capability = Capability::Destroy;
    c.grants = grants(&["railway-staging:destroy"]);
    c
}

const NO_VOLUME_DELETE: &str = r#"
// Volumes are managed by terraform, never by agents.
@id("no-volume-delete")
@reason("volumes are managed by terraform")
forbid (principal, action == Airlock::Action::"destroy", resource)
when { context.operation == "volumeDelete" };
"#;

#[test]
fn operator_forbid_denies_what_defaults_allow() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "terraform.cedar", NO_VOLUME_DELETE);
    let builtin = PolicyEngine::builtin().unwrap();
    let e = PolicyEngine::with_files(&[file]).unwrap();
    assert_eq!(e.operator_policies(), ["no-volume-delete".to_owned()]);

    let c = staging_destroy();
    assert!(builtin.decide(&c.request()).is_allow());
    match e.decide(&c.request()) {
        Decision::Deny { code, reason, policies } => {
            assert_eq!(code, DenyCode::PolicyDenied);
            assert_eq!(code.as_str(), "policy_denied");
            assert_eq!(policies, ["no-volume-delete".to_owned()]);
            assert_eq!(reason, "policy \"no-volume-delete\": volumes are managed by terraform");
        }
        other => panic!("expected Deny, got {other:?}"),
    }
    // Other destroys are unaffected.
    let mut other = staging_destroy();
    other.operation = "serviceDelete".into();
    assert!(e.decide(&other.request()).is_allow());
}

#[test]
fn builtin_codes_outrank_operator_forbids() {
    let dir = tempfile::tempdir().unwrap();
    let e = PolicyEngine::with_files(&[write(dir.path(), "t.cedar", NO_VOLUME_DELETE)]).unwrap();
    let mut c = staging_destroy();
    c.resource_env = env("production");
    let d = e.decide(&c.request());
    assert_eq!(d.code(), Some("cross_environment"));
    assert_eq!(d.policies(), [ids::CROSS_ENVIRONMENT.to_owned(), "no-volume-delete".to_owned()]);
}

#[test]
fn operator_permit_cannot_override_a_builtin_forbid() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "open.cedar", "@id(\"allow-all\")\npermit (principal, action, resource);\n");
    let e = PolicyEngine::with_files(&[file]).unwrap();
    let mut c = Case::staging_read();
    c.resource_env = env("production");
    assert_eq!(e.decide(&c.request()).code(), Some("cross_environment"));
    c.resource_env = env("staging");
    c.grants.clear();
    assert_eq!(e.decide(&c.request()).code(), Some("not_granted"));
}

#[test]
fn malformed_file_reports_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = "@id(\"ok\")\nforbid (principal, action, resource) when { context.operation == \"x\" };\n\
                @id(\"broken\")\nforbid (principal, action, resource) when { context.operation == };\n";
    let file = write(dir.path(), "broken.cedar", text);
    let err = PolicyEngine::with_files(std::slice::from_ref(&file)).unwrap_err();
    let shown = err.to_string();
    let report = invalid_report(err);
    assert!(!report.is_ok());
    let first = &report.errors[0];
    assert_eq!(first.file, file);
    assert_eq!(first.line, 4, "{first}");
    assert!(first.column > 1, "{first}");
    assert!(shown.contains(&format!("{}:4:", file.display())), "{shown}");
    // check_files gives the same report without failing.
    let checked = check_files(&[file]).unwrap();
    assert_eq!(checked.errors, report.errors);
}

#[test]
fn schema_invalid_policy_is_rejected_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let text = "// a policy about owners, which the schema does not have\n\
                @id(\"owner-only\")\n\
                forbid (principal, action, resource)\n\
                when { resource.owner != \"ops\" };\n";
    let file = write(dir.path(), "owner.cedar", text);
    let report = check_files(std::slice::from_ref(&file)).unwrap();
    assert_eq!(report.errors.len(), 1, "{report}");
    let e = &report.errors[0];
    assert_eq!((e.file.as_path(), e.line), (file.as_path(), 4), "{e}");
    assert_eq!(e.policy.as_deref(), Some("owner-only"));
    assert!(e.message.contains("owner"), "{e}");
    assert!(matches!(PolicyEngine::with_files(&[file]), Err(Error::Invalid(_))));
}

#[test]
fn unknown_entity_type_and_action_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.cedar", "@id(\"a\")\nforbid (principal == User::\"bob\", action, resource);\n");
    let b = write(dir.path(), "b.cedar", "@id(\"b\")\nforbid (principal, action == Airlock::Action::\"delete\", resource);\n");
    let report = check_files(&[a.clone(), b.clone()]).unwrap();
    assert!(report.errors.iter().any(|e| e.file == a && e.line == 2), "{report}");
    assert!(report.errors.iter().any(|e| e.file == b && e.line == 2), "{report}");
}

#[test]
fn reserved_duplicate_and_template_policies_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let reserved = write(dir.path(), "r.cedar", "@id(\"airlock-cross-environment\")\npermit (principal, action, resource);\n");
    let report = check_files(&[reserved]).unwrap();
    assert!(report.errors.iter().any(|e| e.message.contains("reserved")), "{report}");

    let dup = write(
        dir.path(),
        "d.cedar",
        "@id(\"x\")\nforbid (principal, action, resource) when { false };\n@id(\"x\")\nforbid (principal, action, resource) when { false };\n",
    );
    let report = check_files(&[dup]).unwrap();
    assert!(report.errors.iter().any(|e| e.message.contains("duplicate") && e.line == 3), "{report}");

    let tpl = write(dir.path(), "t.cedar", "forbid (principal == ?principal, action, resource);\n");
    let report = check_files(&[tpl]).unwrap();
    assert!(report.errors.iter().any(|e| e.message.contains("templates")), "{report}");
}

#[test]
fn policy_without_id_is_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "anon.cedar", "\n\nforbid (principal, action, resource) when { context.operation == \"volumeDelete\" };\n");
    let e = PolicyEngine::with_files(std::slice::from_ref(&file)).unwrap();
    let expected = format!("{}:3", file.display());
    assert_eq!(e.operator_policies(), std::slice::from_ref(&expected));
    let d = e.decide(&staging_destroy().request());
    assert_eq!(d.policies(), std::slice::from_ref(&expected));
    assert_eq!(d.reason().unwrap(), format!("denied by policy {expected:?}"));
}

#[test]
fn directories_load_their_cedar_files_only() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.cedar", NO_VOLUME_DELETE);
    write(dir.path(), "b.cedar", "@id(\"no-x\")\nforbid (principal, action, resource) when { context.operation == \"x\" };\n");
    write(dir.path(), "notes.txt", "this is not cedar {{{");
    let report = check_files(&[dir.path().to_path_buf()]).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.files.len(), 2);
    assert_eq!(report.policies, ["no-volume-delete".to_owned(), "no-x".to_owned()]);
    assert!(report.to_string().contains("2 file(s), 2 policy(ies), 0 error(s)"), "{report}");
}

#[test]
fn missing_path_is_an_io_error() {
    let err = PolicyEngine::with_files(&[PathBuf::from("/nonexistent/airlock/policies.cedar")]).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/airlock/policies.cedar"));
}

#[test]
fn disabling_a_default_switches_it_off_and_only_it() {
    let config = PolicyConfig { files: vec![], disable: vec![ids::CROSS_ENVIRONMENT.to_owned()] };
    let e = PolicyEngine::from_config(&config).unwrap();
    assert_eq!(e.disabled(), [ids::CROSS_ENVIRONMENT.to_owned()]);
    let mut c = Case::staging_read();
    c.resource_env = env("production");
    c.grants = grants(&["railway-staging:read"]);
    assert!(e.decide(&c.request()).is_allow(), "cross-environment disabled");
    c.grants.clear();
    assert_eq!(e.decide(&c.request()).code(), Some("not_granted"), "other defaults still on");

    let e = PolicyEngine::from_config(&PolicyConfig { files: vec![], disable: vec![ids::PRODUCTION_DESTROY_APPROVAL.to_owned()] }).unwrap();
    let c = Case::production("volumeDelete", Capability::Destroy, &["railway-prod:destroy"]);
    assert!(e.decide(&c.request()).is_allow());
}

#[test]
fn disabling_the_base_permit_denies_by_default() {
    let e = PolicyEngine::from_config(&PolicyConfig { files: vec![], disable: vec![ids::PERMIT_GRANTED.to_owned()] }).unwrap();
    let d = e.decide(&Case::staging_read().request());
    assert_eq!(d.code(), Some("policy_denied"));
    assert!(d.policies().is_empty());
    assert!(d.reason().unwrap().starts_with("no policy permits"), "{d:?}");
}

#[test]
fn unknown_disable_id_is_rejected() {
    let config = PolicyConfig { files: vec![], disable: vec!["airlock-cross-env".into()] };
    assert!(matches!(PolicyEngine::from_config(&config), Err(Error::UnknownDisable { .. })));
    assert!(matches!(check_config(&config), Err(Error::UnknownDisable { .. })));
}

#[test]
fn operator_approval_policy_asks_for_a_human() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "deploys.cedar",
        "@id(\"approve-deploys\")\n@approval(\"required\")\n@reason(\"deploys need a human\")\n\
         forbid (principal, action, resource) when { context.operation == \"deployCreate\" };\n",
    );
    let e = PolicyEngine::with_files(&[file]).unwrap();
    let mut c = Case::staging_read();
    c.operation = "deployCreate".into();
    c.capability = Capability::Write;
    c.grants = grants(&["railway-staging:write"]);
    match e.decide(&c.request()) {
        Decision::NeedsApproval { reason, policies } => {
            assert_eq!(policies, ["approve-deploys".to_owned()]);
            assert!(reason.contains("deploys need a human"));
        }
        other => panic!("expected NeedsApproval, got {other:?}"),
    }
    c.approved = true;
    assert!(e.decide(&c.request()).is_allow());
}

#[test]
fn approval_annotation_misuse_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let on_permit = write(dir.path(), "p.cedar", "@id(\"p\")\n@approval(\"required\")\npermit (principal, action, resource);\n");
    let bad_value = write(dir.path(), "v.cedar", "@id(\"v\")\n@approval(\"maybe\")\nforbid (principal, action, resource);\n");
    let report = check_files(&[on_permit, bad_value]).unwrap();
    assert_eq!(report.errors.len(), 2, "{report}");
}

#[test]
fn operator_policy_on_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "args.cedar",
        r#"@id("no-etc")
@reason("tools may not touch /etc")
forbid (principal, action, resource)
when { context.has_arguments && context.arguments.hasTag("path") && context.arguments.getTag("path") like "/etc/*" };

@id("no-force")
forbid (principal, action, resource)
when { context.arguments.hasTag("options.force") && context.arguments.getTag("options.force") == "true" };
"#,
    );
    let e = PolicyEngine::with_files(&[file]).unwrap();
    let mut c = Case::staging_read();
    c.operation = "read_file".into();
    c.arguments = Some(json!({"path": "/etc/shadow"}));
    assert_eq!(e.decide(&c.request()).policies(), ["no-etc".to_owned()]);
    c.arguments = Some(json!({"path": "/work/readme.md"}));
    assert!(e.decide(&c.request()).is_allow());
    c.arguments = Some(json!({"path": "/work/x", "options": {"force": true}}));
    assert_eq!(e.decide(&c.request()).policies(), ["no-force".to_owned()]);
    c.arguments = None;
    assert!(e.decide(&c.request()).is_allow());
    // An attempt to shadow a nested argument with a dotted key fails closed.
    c.arguments = Some(json!({"options": {"force": true}, "options.force": "false"}));
    assert_eq!(e.decide(&c.request()).code(), Some("policy_error"));
}

#[test]
fn evaluation_error_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    // Validates, but overflows at run time for any realistic `now`.
    let file = write(dir.path(), "overflow.cedar", "@id(\"overflow\")\npermit (principal, action, resource) when { context.now * 10000000000000 > 0 };\n");
    let e = PolicyEngine::with_files(&[file]).unwrap();
    match e.decide(&Case::staging_read().request()) {
        Decision::Deny { code, reason, policies } => {
            assert_eq!(code, DenyCode::PolicyError);
            assert!(reason.contains("\"overflow\""), "{reason}");
            assert!(policies.is_empty());
        }
        other => panic!("expected Deny policy_error, got {other:?}"),
    }
}

#[test]
fn an_approval_rule_alone_never_permits() {
    // With the base permit off, nothing permits a production destroy; the approval rule
    // matching must not turn that into NeedsApproval or, once approved, into Allow.
    let e = PolicyEngine::from_config(&PolicyConfig { files: vec![], disable: vec![ids::PERMIT_GRANTED.to_owned()] }).unwrap();
    let mut c = Case::production("volumeDelete", Capability::Destroy, &["railway-prod:destroy"]);
    for approved in [false, true] {
        c.approved = approved;
        let d = e.decide(&c.request());
        assert_eq!(d.code(), Some("policy_denied"), "approved={approved}: {d:?}");
    }
}

#[test]
fn operator_policy_scoped_by_agent_and_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "scope.cedar",
        r#"@id("intern-no-railway")
forbid (principal == Airlock::Agent::"intern", action, resource in Airlock::Upstream::"railway-staging");
"#,
    );
    let e = PolicyEngine::with_files(&[file]).unwrap();
    let mut c = Case::staging_read();
    assert!(e.decide(&c.request()).is_allow(), "other agents unaffected");
    c.agent = "intern".into();
    assert_eq!(e.decide(&c.request()).policies(), ["intern-no-railway".to_owned()]);
    c.upstream = "github".into();
    c.grants = grants(&["github:read"]);
    assert!(e.decide(&c.request()).is_allow(), "other upstreams unaffected");
}
