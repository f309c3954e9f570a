//! Cedar policy for airlock: schema, default rules, Allow / Deny / NeedsApproval.
//!
//! This crate owns the Cedar schema (`policies/airlock.cedarschema`), airlock's built-in
//! policies (`policies/defaults.cedar`), loading and validating operator policy files, and
//! turning one gateway request into a [`Decision`] with a stable machine-readable code, a
//! human-readable reason and the ids of the policies that determined it.
//!
//! It must never do network I/O, touch secrets, or allow on doubt: any error while building
//! or evaluating a request is a [`Decision::Deny`] with [`DenyCode::PolicyError`].
//!
//! # The model
//!
//! | Cedar      | airlock                                                                    |
//! |------------|----------------------------------------------------------------------------|
//! | principal  | `Airlock::Agent::"<agent>"`                                                |
//! | action     | `Airlock::Action::"read"`, `"write"` or `"destroy"` — the operation's class |
//! | resource   | `Airlock::Resource::"<resource id or empty>"`, in `Airlock::Upstream::"<upstream>"` |
//! | context    | task (id, environment, grants, purpose, expiry), operation, computed facts, time, approval |
//!
//! An operation whose capability is not one of the three classes is evaluated as `destroy`
//! (the most restrictive class). Facts Cedar cannot express cleanly are computed here and
//! passed in the context: `granted` ([`airlock_types::Grant::allows`] over the task's grants),
//! `task.holds_destroy` (some grant is of class `destroy`), `task.backup_admin`
//! ([`is_backup_admin_purpose`]) and `resource.production`
//! ([`airlock_types::Environment::is_production`]).
//!
//! # Built-in policies
//!
//! See [`ids`]. They are on unless an operator disables them by id in
//! [`PolicyConfig::disable`]; an unknown id there is an error, so a typo cannot silently
//! leave a rule on or off.
//!
//! # Approvals
//!
//! A `forbid` annotated `@approval("required")` is lifted by a human approval: it is only
//! evaluated when the request is not yet approved, and only after every other policy has
//! allowed the request. So a cross-environment request is denied outright even when it is
//! also a production destroy, and an approved request still has to pass every other rule.
//!
//! # Operator policies
//!
//! Operators add `.cedar` files (or directories of them) with [`PolicyConfig::files`].
//! Each policy should carry `@id("...")` (ids starting with `airlock-` are reserved); without
//! one its id is `<file>:<line>`. `@reason("...")` gives the human reason reported when the
//! policy denies. Templates are not supported. [`check_files`] validates files against the
//! schema and reports errors with file, line and column.

use std::fmt;

mod engine;
mod load;

pub use engine::{PolicyEngine, Request};
pub use load::{CheckReport, Diagnostic, PolicyConfig, check_config, check_files};

/// The Cedar schema every request and policy is validated against.
pub const SCHEMA: &str = include_str!("../policies/airlock.cedarschema");

/// The text of airlock's built-in policies.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/defaults.cedar");

/// The purpose prefix that marks a task as backup administration.
///
/// See [`is_backup_admin_purpose`].
pub const BACKUP_ADMIN_PURPOSE: &str = "backup-admin";

/// Ids of the built-in policies (the `@id` annotation of each).
pub mod ids {
    /// Permit: a task may do what its grants allow (every forbid overrides it).
    pub const PERMIT_GRANTED: &str = "airlock-permit-granted";
    /// Forbid: the task's environment must equal the upstream's and the resource's.
    pub const CROSS_ENVIRONMENT: &str = "airlock-cross-environment";
    /// Forbid: the task has expired.
    pub const TASK_EXPIRED: &str = "airlock-task-expired";
    /// Forbid: no grant of the task allows the operation.
    pub const NOT_GRANTED: &str = "airlock-not-granted";
    /// Forbid lifted by approval: `destroy` in production needs a human.
    pub const PRODUCTION_DESTROY_APPROVAL: &str = "airlock-production-destroy-approval";
    /// Forbid: a task holding a `destroy`-class grant may not destroy backups.
    pub const BACKUP_DESTROY_SEPARATION: &str = "airlock-backup-destroy-separation";
    /// Forbid: destroying backups needs a backup-administration task.
    pub const BACKUP_DESTROY_PURPOSE: &str = "airlock-backup-destroy-purpose";
    /// Forbid: a backup-administration task may not destroy primary-tier resources.
    pub const BACKUP_ADMIN_NO_PRIMARY_DESTROY: &str = "airlock-backup-admin-no-primary-destroy";

    /// Every built-in policy id.
    pub const ALL: &[&str] = &[
        PERMIT_GRANTED,
        CROSS_ENVIRONMENT,
        TASK_EXPIRED,
        NOT_GRANTED,
        PRODUCTION_DESTROY_APPROVAL,
        BACKUP_DESTROY_SEPARATION,
        BACKUP_DESTROY_PURPOSE,
        BACKUP_ADMIN_NO_PRIMARY_DESTROY,
    ];
}

/// Whether a task purpose marks backup administration.
///
/// True when the purpose, after leading whitespace, is exactly `backup-admin` or starts with
/// `backup-admin` followed by `:` or whitespace (`"backup-admin: prune snapshots older than
/// 90 days"`). `backup-administrator` or `Backup-Admin` do not count: the marker is exact so
/// that it is deliberate.
pub fn is_backup_admin_purpose(purpose: &str) -> bool {
    match purpose.trim_start().strip_prefix(BACKUP_ADMIN_PURPOSE) {
        Some(rest) => rest.is_empty() || rest.starts_with(':') || rest.starts_with(char::is_whitespace),
        None => false,
    }
}

/// The outcome of one policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow {
        /// Ids of the permit policies that allowed it.
        policies: Vec<String>,
    },
    /// The request is refused.
    Deny {
        /// Stable machine-readable code.
        code: DenyCode,
        /// Human-readable reason.
        reason: String,
        /// Ids of the policies that determined the denial (empty for errors and default deny).
        policies: Vec<String>,
    },
    /// The request is allowed by every rule except ones a human approval lifts.
    NeedsApproval {
        /// Human-readable reason.
        reason: String,
        /// Ids of the approval policies that require it.
        policies: Vec<String>,
    },
}

impl Decision {
    /// Whether the request may proceed now.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The ids of the policies that determined this decision.
    pub fn policies(&self) -> &[String] {
        match self {
            Decision::Allow { policies } | Decision::Deny { policies, .. } | Decision::NeedsApproval { policies, .. } => policies,
        }
    }

    /// The stable error code to answer with: `None` for Allow, the deny code, or
    /// `"approval_required"` for NeedsApproval.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { code, .. } => Some(code.as_str()),
            Decision::NeedsApproval { .. } => Some(DenyCode::ApprovalRequired.as_str()),
        }
    }

    /// The human-readable reason, if the request does not proceed.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { reason, .. } | Decision::NeedsApproval { reason, .. } => Some(reason),
        }
    }
}

/// Why a request was denied: a stable code for machines.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// The task's environment differs from the upstream's or the resource's.
    CrossEnvironment,
    /// No grant of the task allows the operation.
    NotGranted,
    /// Backup-tier destruction by a task that may destroy primaries, or without a backup-admin purpose.
    BackupSeparation,
    /// A human approval is required (used by callers that cannot hold or queue a request).
    ApprovalRequired,
    /// An operator policy (or the absence of any permit) denied the request.
    PolicyDenied,
    /// The request or a policy could not be evaluated; denied to fail closed.
    PolicyError,
    /// The task has expired.
    Expired,
}

impl DenyCode {
    /// The stable snake_case code (`"cross_environment"`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyCode::CrossEnvironment => "cross_environment",
            DenyCode::NotGranted => "not_granted",
            DenyCode::BackupSeparation => "backup_separation",
            DenyCode::ApprovalRequired => "approval_required",
            DenyCode::PolicyDenied => "policy_denied",
            DenyCode::PolicyError => "policy_error",
            DenyCode::Expired => "expired",
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong while loading policies.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy file or directory could not be read.
    #[error("cannot read policy path {}: {source}; check that it exists and is readable", path.display())]
    Io {
        /// The path that failed.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Operator policies failed to parse or validate against the schema.
    #[error("operator policies are invalid ({count} error(s)); fix them and re-run `airlock policy check`:\n{report}", count = .0.errors.len(), report = .0)]
    Invalid(Box<CheckReport>),
    /// `disable` names a policy id that is not built in.
    #[error("cannot disable policy {id:?}: no built-in policy has that id (built-in ids: {known})")]
    UnknownDisable {
        /// The id that was asked for.
        id: String,
        /// The built-in ids, comma-separated.
        known: String,
    },
    /// The built-in schema or policies are broken (a bug in airlock, not in your configuration).
    #[error("built-in policies are broken: {0}; this is a bug in airlock, please report it")]
    Builtin(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_admin_purpose_marker_is_exact() {
        for yes in ["backup-admin", "backup-admin: prune", "  backup-admin rotate", "backup-admin\tx"] {
            assert!(is_backup_admin_purpose(yes), "{yes:?} rejected");
        }
        for no in ["", "backup", "backup-administrator", "Backup-Admin", "not backup-admin", "backup-admin-ish"] {
            assert!(!is_backup_admin_purpose(no), "{no:?} accepted");
        }
    }

    #[test]
    fn codes_are_stable() {
        let all = [
            (DenyCode::CrossEnvironment, "cross_environment"),
            (DenyCode::NotGranted, "not_granted"),
            (DenyCode::BackupSeparation, "backup_separation"),
            (DenyCode::ApprovalRequired, "approval_required"),
            (DenyCode::PolicyDenied, "policy_denied"),
            (DenyCode::PolicyError, "policy_error"),
            (DenyCode::Expired, "expired"),
        ];
        for (code, s) in all {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.to_string(), s);
        }
    }

    #[test]
    fn every_builtin_id_is_in_the_default_file() {
        for id in ids::ALL {
            assert!(DEFAULT_POLICIES.contains(&format!("@id(\"{id}\")")), "{id} missing from defaults.cedar");
        }
        assert_eq!(DEFAULT_POLICIES.lines().filter(|l| l.starts_with("@id(")).count(), ids::ALL.len());
    }
}
