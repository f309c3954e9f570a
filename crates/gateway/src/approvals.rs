//! Approvals: a human in front of destruction.
//!
//! This module owns the gateway's side of approvals — [`Approvals`], shared by the
//! pipeline (which creates approval requests, waits on them in `hold` mode and consumes
//! them exactly once) and the admin API — and the admin API itself:
//!
//! ```text
//! GET  /v1/approvals[?status=pending]        → [ApprovalRecord, …]
//! POST /v1/approvals/{id}/approve {"note"}    → ApprovalRecord
//! POST /v1/approvals/{id}/deny    {"reason"}  → ApprovalRecord
//! ```
//!
//! Every admin route requires `Authorization: Bearer <admin token>` (the contents of
//! `<state dir>/admin.token`), compared in constant time. A task token (`alk_…`) is
//! refused with `task_token_cannot_approve`. These routes are mounted on the admin
//! listener only ([`crate::server::admin_router`]); the agent-facing port has no route to
//! them. This module must never accept an approval from anything but the admin credential,
//! never log or echo a presented credential, and never let an approval be used twice
//! (that is the store's atomic `consume_approval`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_store::{ApprovalRecord, ApprovalStatus, AuditEvent, Store};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use zeroize::Zeroizing;

use crate::config::ApprovalSettings;

/// Longest note or deny reason kept.
const MAX_NOTE: usize = 1000;

/// Approval state shared by the pipeline and the admin API of one gateway process.
pub struct Approvals {
    store: Arc<dyn Store>,
    decided: Notify,
    settings: HashMap<String, ApprovalSettings>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Approvals {
    /// Approvals kept in `store`, with per-upstream `settings`.
    pub fn new(store: Arc<dyn Store>, settings: HashMap<String, ApprovalSettings>) -> Self {
        Self { store, decided: Notify::new(), settings }
    }

    /// The store approvals live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings for `upstream` (defaults when unknown).
    pub fn settings(&self, upstream: &str) -> ApprovalSettings {
        self.settings.get(upstream).copied().unwrap_or_default()
    }

    /// Wake every held request (an approval was decided in this process).
    pub fn notify_decided(&self) {
        self.decided.notify_waiters();
    }

    /// Wait until a decision is announced in this process or `at_most` passes (decisions
    /// made by another replica are seen by the caller's next store poll).
    pub async fn wait_decided(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.decided.notified()).await;
    }

    /// Approve or deny `id` as `by`; audits the decision and wakes held requests.
    pub async fn decide(&self, id: &str, approve: bool, by: &str, note: Option<&str>) -> Result<ApprovalRecord, AdminError> {
        let now = unix_now();
        let rec = self.store.get_approval(id).await.map_err(AdminError::store)?.ok_or_else(|| {
            AdminError::new(
                StatusCode::NOT_FOUND,
                "approval_not_found",
                format!("no approval request with id {:?}; `airlock approvals list` shows pending ones", clip(id, 64)),
            )
        })?;
        if rec.status != ApprovalStatus::Pending {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                "approval_not_pending",
                format!("approval {} is already {}; only pending requests can be decided", rec.id, rec.status.as_str()),
            ));
        }
        if rec.expires_at < now {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                "approval_expired",
                format!("approval {} expired before a decision; the agent must ask again", rec.id),
            ));
        }
        let valid_until = now + self.settings(&rec.upstream).ttl.as_secs() as i64;
        let rec = match self.store.decide_approval(id, approve, by, note, now, valid_until).await {
            Ok(r) => r,
            Err(airlock_store::Error::NotFound { .. }) => {
                return Err(AdminError::new(StatusCode::CONFLICT, "approval_not_pending", format!("approval {id} was decided concurrently")));
            }
            Err(e) => return Err(AdminError::store(e)),
        };
        let (action, outcome) = if approve { ("approval.approved", "approved") } else { ("approval.denied", "denied") };
        let event = AuditEvent {
            id: crate::audit::new_id(),
            ts_ms: unix_ms(),
            actor: by.to_owned(),
            action: action.into(),
            subject: rec.id.clone(),
            outcome: outcome.into(),
            task_id: Some(rec.task_id.clone()),
            detail: json!({
                "approval_id": rec.id,
                "agent": rec.agent,
                "upstream": rec.upstream,
                "operation": rec.operation,
                "resource": rec.resource,
                "environment": rec.environment,
                "note": note,
                "valid_until": if approve { Some(valid_until) } else { None },
            }),
        };
        self.notify_decided();
        if let Err(e) = self.store.append_audit(&event).await {
            tracing::error!(error = %e, approval = %rec.id, "approval decided but its audit record could not be written");
            return Err(AdminError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                format!("approval {} was {outcome} but the audit record failed: {e}", rec.id),
            ));
        }
        Ok(rec)
    }
}

/// The hash identifying one exact request: sha256 over the length-prefixed method,
/// upstream, request target and body, hex.
pub fn request_hash(method: &str, upstream: &str, target: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), upstream.as_bytes(), target.as_bytes(), body] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The admin credential. Its `Debug` never shows the value.
pub struct AdminToken(Zeroizing<String>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// The token from the contents of `admin.token` (trimmed); `None` if empty.
    pub fn from_file_contents(raw: &[u8]) -> Option<Self> {
        let s = String::from_utf8_lossy(raw).trim().to_owned();
        (!s.is_empty()).then(|| Self(Zeroizing::new(s)))
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// An admin API refusal: `{"error": code, "message": …}`.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn store(e: airlock_store::Error) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("the approval store failed: {e}"))
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.code, "message": self.message }))).into_response()
    }
}

#[derive(Clone)]
struct AdminCtx {
    approvals: Option<Arc<Approvals>>,
    token: Option<Arc<AdminToken>>,
}

/// The approval routes of the admin API (mount on the admin listener only).
pub fn admin_routes(approvals: Option<Arc<Approvals>>, token: Option<Arc<AdminToken>>) -> axum::Router {
    axum::Router::new()
        .route("/v1/approvals", get(list))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/deny", post(deny))
        .with_state(AdminCtx { approvals, token })
}

/// Check the admin credential and return the approvals service.
fn authorise(ctx: &AdminCtx, headers: &HeaderMap) -> Result<Arc<Approvals>, AdminError> {
    let unauth = |m: &str| AdminError::new(StatusCode::UNAUTHORIZED, "admin_auth_required", m);
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauth("send the admin credential: Authorization: Bearer <contents of admin.token in the state directory>"))?;
    if presented.starts_with(airlock_token::TOKEN_PREFIX) {
        return Err(AdminError::new(
            StatusCode::FORBIDDEN,
            "task_token_cannot_approve",
            "a task token can never approve or list approvals; use the admin credential (`airlock approve` reads it from the state directory)",
        ));
    }
    let token = ctx.token.as_ref().ok_or_else(|| unauth("this gateway was started without an admin credential; approvals cannot be decided here"))?;
    if !token.matches(presented) {
        return Err(unauth("the admin credential is wrong"));
    }
    ctx.approvals
        .clone()
        .ok_or_else(|| AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "approvals_unavailable", "this gateway was started without an approval store"))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(State(ctx): State<AdminCtx>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Result<Json<Vec<ApprovalRecord>>, AdminError> {
    let approvals = authorise(&ctx, &headers)?;
    let status = match q.status.as_deref() {
        None | Some("") | Some("all") => None,
        Some("pending") => Some(ApprovalStatus::Pending),
        Some("approved") => Some(ApprovalStatus::Approved),
        Some("denied") => Some(ApprovalStatus::Denied),
        Some("used") => Some(ApprovalStatus::Used),
        Some(other) => {
            return Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                "bad_status",
                format!("status {:?} is not one of pending, approved, denied, used", clip(other, 32)),
            ));
        }
    };
    Ok(Json(approvals.store().list_approvals(status).await.map_err(AdminError::store)?))
}

fn body_field(body: &Bytes, field: &str) -> Result<Option<String>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, "bad_request", format!("the body must be a JSON object: {e}")))?;
    match v.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(clip(s.trim(), MAX_NOTE)).filter(|s| !s.is_empty())),
        Some(_) => Err(AdminError::new(StatusCode::BAD_REQUEST, "bad_request", format!("{field:?} must be a string"))),
    }
}

async fn approve(State(ctx): State<AdminCtx>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Result<Json<ApprovalRecord>, AdminError> {
    let approvals = authorise(&ctx, &headers)?;
    let note = body_field(&body, "note")?;
    Ok(Json(approvals.decide(&id, true, "admin", note.as_deref()).await?))
}

async fn deny(State(ctx): State<AdminCtx>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Result<Json<ApprovalRecord>, AdminError> {
    let approvals = authorise(&ctx, &headers)?;
    let reason = body_field(&body, "reason")?.ok_or_else(|| {
        AdminError::new(StatusCode::BAD_REQUEST, "reason_required", "denying needs a reason: {\"reason\": \"…\"} (it is returned to the agent)")
    })?;
    Ok(Json(approvals.decide(&id, false, "admin", Some(&reason)).await?))
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matching_and_debug() {
        let t = AdminToken::from_file_contents(b"  s3cret-admin\n").unwrap();
        assert!(t.matches("s3cret-admin"));
        assert!(!t.matches("s3cret-admi"));
        assert!(!t.matches(""));
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(AdminToken::from_file_contents(b" \n").is_none());
    }

    #[test]
    fn request_hash_is_unambiguous() {
        let a = request_hash("POST", "stg", "/stg/graphql", b"{}");
        assert_eq!(a, request_hash("POST", "stg", "/stg/graphql", b"{}"));
        assert_ne!(a, request_hash("POST", "stg", "/stg/graphql", b"{} "));
        assert_ne!(request_hash("POST", "ab", "c", b""), request_hash("POST", "a", "bc", b""));
    }
}
