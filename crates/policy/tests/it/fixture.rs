//! A request builder over owned values so each test states only what it changes.

use airlock_policy::Request;
use airlock_types::{Capability, Environment, Grant, Tier};

pub const NOW: i64 = 1_700_000_000;

/// Owned inputs for one request; `request()` borrows them.
pub struct Case {
    pub agent: String,
    pub task_id: String,
    pub task_env: Environment,
    pub grants: Vec<Grant>,
    pub purpose: Option<String>,
    pub expires_at: i64,
    pub upstream: String,
    pub upstream_env: Environment,
    pub operation: String,
    pub capability: Capability,
    pub resource_id: Option<String>,
    pub resource_env: Environment,
    pub tier: Tier,
    pub approved: bool,
    pub now: i64,
    pub arguments: Option<serde_json::Value>,
}

pub fn env(s: &str) -> Environment {
    s.parse().unwrap()
}

pub fn grants(list: &[&str]) -> Vec<Grant> {
    list.iter().map(|g| g.parse().unwrap()).collect()
}

impl Case {
    /// A staging task reading from the staging upstream with a `read` grant: allowed.
    pub fn staging_read() -> Self {
        Case {
            agent: "claude".into(),
            task_id: "t-1".into(),
            task_env: env("staging"),
            grants: grants(&["railway-staging:read"]),
            purpose: None,
            expires_at: NOW + 3600,
            upstream: "railway-staging".into(),
            upstream_env: env("staging"),
            operation: "volumes".into(),
            capability: Capability::Read,
            resource_id: Some("vol-staging-db".into()),
            resource_env: env("staging"),
            tier: Tier::Primary,
            approved: false,
            now: NOW,
            arguments: None,
        }
    }

    /// A production task on the production upstream; the caller sets operation and grants.
    pub fn production(operation: &str, capability: Capability, grant_list: &[&str]) -> Self {
        Case {
            task_env: env("production"),
            upstream: "railway-prod".into(),
            upstream_env: env("production"),
            resource_env: env("production"),
            resource_id: Some("vol-prod-db".into()),
            operation: operation.into(),
            capability,
            grants: grants(grant_list),
            ..Case::staging_read()
        }
    }

    pub fn request(&self) -> Request<'_> {
        Request {
            agent: &self.agent,
            task_id: &self.task_id,
            task_environment: &self.task_env,
            grants: &self.grants,
            purpose: self.purpose.as_deref(),
            expires_at: self.expires_at,
            upstream: &self.upstream,
            upstream_environment: &self.upstream_env,
            operation: &self.operation,
            capability: &self.capability,
            resource_id: self.resource_id.as_deref(),
            resource_environment: &self.resource_env,
            resource_tier: self.tier,
            approved: self.approved,
            now: self.now,
            arguments: self.arguments.as_ref(),
        }
    }
}
