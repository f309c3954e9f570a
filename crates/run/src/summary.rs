//! The closing summary of a run, computed from the audit log.
//!
//! This module owns counting a task's gateway decisions per upstream: requests
//! allowed, denied, and held for approval. It reads audit entries only; it must never
//! write to the log or print a detail field (details may hold request paths).

use std::collections::BTreeMap;

use airlock_store::AuditEntry;

/// Decisions for one upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests the gateway forwarded.
    pub allowed: u64,
    /// Requests refused.
    pub denied: u64,
    /// Requests held for a human's approval.
    pub awaiting_approval: u64,
}

/// Per-upstream counts, keyed by upstream name (`-` when the request named none).
pub type Summary = BTreeMap<String, Counts>;

/// Whether a denied `gateway.request` record means "waiting for approval".
fn is_approval_hold(e: &AuditEntry) -> bool {
    e.event.outcome == "needs_approval" || e.event.detail.get("code").and_then(|c| c.as_str()).is_some_and(|c| c.contains("approval"))
}

/// Count `gateway.request` records (one per request; `gateway.response` records are
/// the same requests' outcomes and are not counted again).
pub fn summarize(entries: &[AuditEntry]) -> Summary {
    let mut out = Summary::new();
    for e in entries.iter().filter(|e| e.event.action == "gateway.request") {
        let upstream = e.event.subject.split('/').next().filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
        let c = out.entry(upstream).or_default();
        match e.event.outcome.as_str() {
            "allowed" => c.allowed += 1,
            _ if is_approval_hold(e) => c.awaiting_approval += 1,
            _ => c.denied += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::AuditEvent;

    fn entry(action: &str, subject: &str, outcome: &str, code: Option<&str>) -> AuditEntry {
        AuditEntry {
            seq: 1,
            event: AuditEvent {
                id: "x".into(),
                ts_ms: 0,
                actor: "agent:a".into(),
                action: action.into(),
                subject: subject.into(),
                outcome: outcome.into(),
                task_id: Some("t".into()),
                detail: code.map_or(serde_json::json!({}), |c| serde_json::json!({ "code": c })),
            },
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn counts_per_upstream_and_ignores_other_records() {
        let s = summarize(&[
            entry("gateway.request", "github/repos.get", "allowed", None),
            entry("gateway.response", "github/repos.get", "ok", None),
            entry("gateway.request", "github/repos.delete", "denied", Some("policy_denied")),
            entry("gateway.request", "railway/volumeDelete", "denied", Some("needs_approval")),
            entry("gateway.request", "railway/volumeDelete", "needs_approval", None),
            entry("gateway.request", "-/-", "denied", Some("bad_token")),
            entry("task.start", "t", "ok", None),
        ]);
        assert_eq!(s["github"], Counts { allowed: 1, denied: 1, awaiting_approval: 0 });
        assert_eq!(s["railway"], Counts { allowed: 0, denied: 0, awaiting_approval: 2 });
        assert_eq!(s["-"], Counts { allowed: 0, denied: 1, awaiting_approval: 0 });
        assert_eq!(s.len(), 3);
        assert!(summarize(&[]).is_empty());
    }
}
