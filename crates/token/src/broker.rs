//! The task lifecycle.
//!
//! Owns starting a task (validate, record, audit, mint) and ending it (record,
//! revoke, audit). Lifetimes are always bounded: every task has a TTL and the
//! TTL is capped. It must never return a token for a task it failed to record.

use std::sync::Arc;
use std::time::Duration;

use airlock_store::{AuditEvent, Store, TaskRecord};
use airlock_types::{Environment, Grant, Name};

use crate::keys::{Claims, TokenAuthority};
use crate::{Error, Result, human_duration, now_unix};

/// A request to start a task.
#[derive(Debug, Clone)]
pub struct StartTask {
    /// The agent doing the work.
    pub agent: Name,
    /// The one environment the task may touch.
    pub environment: Environment,
    /// What it may do.
    pub grants: Vec<Grant>,
    /// How long the token lives.
    pub ttl: Duration,
    /// Why (recorded, and visible to policy).
    pub purpose: Option<String>,
    /// Who is starting it (`cli:<user>`).
    pub actor: String,
}

/// Starts and ends tasks.
pub struct Broker {
    store: Arc<dyn Store>,
    authority: TokenAuthority,
    max_ttl: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("max_ttl", &self.max_ttl).finish_non_exhaustive()
    }
}

/// An audit event stamped now with a fresh id.
pub fn audit_event(actor: &str, action: &str, subject: &str, outcome: &str, task_id: Option<&str>, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        ts_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        outcome: outcome.to_owned(),
        task_id: task_id.map(str::to_owned),
        detail,
    }
}

impl Broker {
    /// A broker minting with `authority`, recording in `store`, capping lifetimes at `max_ttl`.
    pub fn new(store: Arc<dyn Store>, authority: TokenAuthority, max_ttl: Duration) -> Self {
        Self { store, authority, max_ttl }
    }

    /// The signing authority (for its public key).
    pub fn authority(&self) -> &TokenAuthority {
        &self.authority
    }

    /// Validate, record and audit a new task, then mint its token.
    pub async fn start_task(&self, req: &StartTask) -> Result<(TaskRecord, String)> {
        if req.grants.is_empty() {
            return Err(Error::NoGrants);
        }
        if req.ttl.is_zero() {
            return Err(Error::TtlInvalid("--ttl must be greater than zero".into()));
        }
        if req.ttl > self.max_ttl {
            return Err(Error::TtlTooLong { requested: human_duration(req.ttl), max: human_duration(self.max_ttl) });
        }
        if let Some(p) = &req.purpose
            && (p.len() > 500 || p.chars().any(char::is_control))
        {
            return Err(Error::Invalid("--purpose must be at most 500 printable characters".into()));
        }
        let mut grants = req.grants.clone();
        grants.sort();
        grants.dedup();
        let now = now_unix();
        let task = TaskRecord {
            id: uuid::Uuid::now_v7().to_string(),
            agent: req.agent.to_string(),
            environment: req.environment.to_string(),
            grants: grants.iter().map(ToString::to_string).collect(),
            purpose: req.purpose.clone(),
            created_at: now,
            expires_at: now + req.ttl.as_secs() as i64,
            ended_at: None,
            created_by: req.actor.clone(),
        };
        let token = self.authority.mint(&Claims {
            task_id: &task.id,
            agent: &task.agent,
            environment: &task.environment,
            grants: &grants,
            purpose: task.purpose.as_deref(),
            expires_at: task.expires_at,
        })?;
        self.store.insert_task(&task).await?;
        self.store
            .append_audit(&audit_event(
                &req.actor,
                "task.start",
                &task.id,
                "ok",
                Some(&task.id),
                serde_json::json!({
                    "agent": task.agent, "environment": task.environment, "grants": task.grants,
                    "purpose": task.purpose, "expires_at": task.expires_at,
                    "token_hash": hex::encode(&crate::token_hash(&token)[..8]),
                }),
            ))
            .await?;
        Ok((task, token))
    }

    /// End a task and revoke every token minted for it or narrowed from it.
    /// Returns false if it had already ended.
    pub async fn end_task(&self, id: &str, actor: &str, reason: &str) -> Result<bool> {
        end_task(&*self.store, id, actor, reason).await
    }
}

/// End and revoke a task without holding the signing key (e.g. `airlock run`'s supervisor).
pub async fn end_task(store: &dyn Store, id: &str, actor: &str, reason: &str) -> Result<bool> {
    let ended = store.end_task(id, crate::now_unix(), reason).await.map_err(|e| match e {
        airlock_store::Error::NotFound { .. } => Error::UnknownTask(id.to_owned()),
        other => other.into(),
    })?;
    store
        .append_audit(&audit_event(actor, "task.end", id, if ended { "ok" } else { "already_ended" }, Some(id), serde_json::json!({ "reason": reason })))
        .await?;
    Ok(ended)
}
