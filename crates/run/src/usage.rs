//! Which of a task's grants were used, computed from the audit log: "what access is
//! granted but never used".
//!
//! This module owns matching a task's allowed `gateway.request` records to the grants that
//! covered them (the same rule the gateway applies, [`Grant::allows`]), and spotting grants
//! wider than what was done with them. It reads audit entries only; it must never write to
//! the log, and never print a detail field beyond upstream, operation and capability.

use airlock_store::AuditEntry;
use airlock_types::{Capability, Grant};
use serde::Serialize;

/// How one grant was used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantUse {
    /// The grant as written (`github:write`).
    pub grant: String,
    /// Allowed operations this grant covered (a GraphQL request with three fields counts three).
    pub operations: u64,
    /// The highest capability class among them (`read`, `write`, `destroy`), if any was a class.
    pub highest: Option<String>,
    /// A narrower grant that would have allowed everything this one was used for, when the
    /// grant is a class wider than its use (`github:write` used only for reads → `github:read`).
    /// `None` when unused (the advice is then to drop it) or already as narrow as its use.
    pub narrower: Option<String>,
}

impl GrantUse {
    /// Whether no allowed operation used this grant.
    pub fn unused(&self) -> bool {
        self.operations == 0
    }
}

/// A task's grants and how each was used, plus its refused requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// One entry per grant, in the task's order.
    pub grants: Vec<GrantUse>,
    /// Requests the gateway forwarded for the task.
    pub allowed_requests: u64,
    /// Requests the gateway refused (including those held for approval).
    pub refused_requests: u64,
    /// Grants the audit records could not be matched with (a grant string that no longer
    /// parses); listed so nothing is silently dropped.
    pub unparsable_grants: Vec<String>,
}

/// One allowed operation from a `gateway.request` record.
struct Op<'a> {
    upstream: &'a str,
    name: &'a str,
    capability: Capability,
}

/// `(name, capability)` of an operation object (`name_key` names its name field).
fn op<'a>(v: &'a serde_json::Value, name_key: &str) -> Option<(&'a str, Capability)> {
    let name = v.get(name_key)?.as_str()?;
    let cap = v.get("capability")?.as_str()?.parse().ok()?;
    Some((name, cap))
}

/// The operations an allowed record carried: its `operations` list, or the single
/// `operation` / `capability` pair of records without one.
fn operations(e: &AuditEntry) -> Vec<Op<'_>> {
    let d = &e.event.detail;
    let Some(upstream) = d.get("upstream").and_then(|u| u.as_str()) else { return Vec::new() };
    let mut out: Vec<Op<'_>> = d
        .get("operations")
        .and_then(|o| o.as_array())
        .map(|list| list.iter().filter_map(|v| op(v, "name")).map(|(name, capability)| Op { upstream, name, capability }).collect())
        .unwrap_or_default();
    if out.is_empty()
        && let Some((name, capability)) = op(d, "operation")
    {
        out.push(Op { upstream, name, capability });
    }
    out
}

/// How `grants` (as stored on the task) were used by the task's audit `entries` (any
/// actions; only `gateway.request` records count).
pub fn grant_usage(grants: &[String], entries: &[AuditEntry]) -> Usage {
    let mut parsed: Vec<(String, Grant)> = Vec::new();
    let mut unparsable_grants = Vec::new();
    for g in grants {
        match g.parse::<Grant>() {
            Ok(p) => parsed.push((g.clone(), p)),
            Err(_) => unparsable_grants.push(g.clone()),
        }
    }
    let mut counts = vec![0u64; parsed.len()];
    let mut highest: Vec<Option<u8>> = vec![None; parsed.len()];
    let (mut allowed_requests, mut refused_requests) = (0, 0);
    for e in entries.iter().filter(|e| e.event.action == "gateway.request") {
        if e.event.outcome != "allowed" {
            refused_requests += 1;
            continue;
        }
        allowed_requests += 1;
        for op in operations(e) {
            for (i, (_, g)) in parsed.iter().enumerate() {
                if g.allows(op.upstream, op.name, &op.capability) {
                    counts[i] += 1;
                    if let Some(r) = op.capability.rank() {
                        highest[i] = highest[i].max(Some(r));
                    }
                }
            }
        }
    }
    let class = |r: u8| match r {
        1 => Capability::Read,
        2 => Capability::Write,
        _ => Capability::Destroy,
    };
    let grants = parsed
        .iter()
        .zip(counts.iter().zip(&highest))
        .map(|((text, g), (&operations, &top))| {
            let narrower = match (g.capability.rank(), top) {
                (Some(granted), Some(used)) if used < granted => Some(format!("{}:{}", g.upstream, class(used))),
                _ => None,
            };
            GrantUse { grant: text.clone(), operations, highest: top.map(|r| class(r).to_string()), narrower }
        })
        .collect();
    Usage { grants, allowed_requests, refused_requests, unparsable_grants }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_store::AuditEvent;
    use serde_json::json;

    fn request(outcome: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            seq: 1,
            event: AuditEvent {
                id: "r".into(),
                ts_ms: 0,
                actor: "agent:a".into(),
                action: "gateway.request".into(),
                subject: "x".into(),
                outcome: outcome.into(),
                task_id: Some("t".into()),
                detail,
            },
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    fn rest(upstream: &str, op: &str, cap: &str) -> serde_json::Value {
        json!({ "upstream": upstream, "operation": op, "capability": cap, "operations": [{ "name": op, "capability": cap, "resource": null }] })
    }

    fn grants(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unused_grants_and_narrower_advice() {
        let entries = vec![
            request("allowed", rest("github", "GET /repos/{o}/{r}", "read")),
            request("allowed", rest("github", "GET /user", "read")),
            request("denied", rest("cloud", "volumeDelete", "destroy")),
            request("needs_approval", rest("cloud", "volumeDelete", "destroy")),
        ];
        let u = grant_usage(&grants(&["github:write", "cloud:destroy", "slack:read"]), &entries);
        assert_eq!((u.allowed_requests, u.refused_requests), (2, 2));
        let g = &u.grants;
        assert_eq!((g[0].operations, g[0].highest.as_deref(), g[0].narrower.as_deref()), (2, Some("read"), Some("github:read")));
        assert!(g[1].unused() && g[1].narrower.is_none(), "refused requests do not count as use: {:?}", g[1]);
        assert!(g[2].unused());
    }

    #[test]
    fn graphql_fields_count_separately_and_named_grants_match_by_name() {
        let detail = json!({
            "upstream": "cloud", "operation": "volumeDelete", "capability": "destroy",
            "operations": [
                { "name": "volumes", "capability": "read" },
                { "name": "volumeDelete", "capability": "destroy" },
            ],
        });
        let u = grant_usage(&grants(&["cloud:read", "cloud:volumeDelete", "cloud:destroy"]), &[request("allowed", detail)]);
        assert_eq!(u.grants[0].operations, 1, "read covers the read field only");
        assert_eq!(u.grants[1].operations, 1, "the named grant covers its operation");
        assert_eq!(u.grants[1].highest.as_deref(), Some("destroy"));
        assert_eq!(u.grants[1].narrower, None, "a named grant is already as narrow as it gets");
        assert_eq!((u.grants[2].operations, u.grants[2].narrower.as_deref()), (2, None), "destroy was used as destroy");
    }

    #[test]
    fn records_without_an_operations_list_and_other_actions() {
        let mut e = request("allowed", json!({ "upstream": "github", "operation": "GET /user", "capability": "read" }));
        let mut other = e.clone();
        other.event.action = "gateway.response".into();
        e.seq = 2;
        let u = grant_usage(&grants(&["github:read", "not a grant"]), &[e, other]);
        assert_eq!(u.allowed_requests, 1, "only gateway.request records count");
        assert_eq!(u.grants[0].operations, 1);
        assert_eq!(u.unparsable_grants, ["not a grant"]);
    }

    #[test]
    fn no_records_means_every_grant_unused() {
        let u = grant_usage(&grants(&["github:read"]), &[]);
        assert!(u.grants[0].unused());
        assert_eq!((u.allowed_requests, u.refused_requests), (0, 0));
    }
}
