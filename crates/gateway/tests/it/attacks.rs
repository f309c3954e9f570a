//! Every attack from the gateway-core issue, refused with the right code, and the upstream
//! never sees a request it should not.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use airlock_store::{ApprovalRecord, ApprovalStatus, AuditEntry, AuditEvent, AuditFilter, Health, Revocation, SecretRecord, Store, TaskRecord};

use crate::harness::*;

fn assert_nothing_forwarded(h: &Harness) {
    assert!(h.records().is_empty(), "upstream saw: {:?}", h.records());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_out_of_the_route_prefix() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:destroy"], 600);
    for path in [
        "/stg/../prod/v1/x",
        "/stg/v1/../../admin",
        "/stg/%2e%2e/prod",
        "/stg/%2E%2E/prod",
        "/stg/.%2e/prod",
        "/stg/v1%2F..%2F..%2Fprod",
        "/stg/v1/%2f",
        "/stg/%252e%252e/prod",
        "/stg/%25252e%25252e/prod",
        "/stg/..;/prod",
        "/stg/v1/%5c..%5c",
        "/stg/v1//x",
        "/stg/v1/a%0d%0aX-Injected:%201",
    ] {
        let r = h.send("GET", path, &[("X-Airlock-Token", &token)], b"").await;
        assert_eq!((r.status, r.code().as_str()), (400, "path_traversal"), "{path}");
    }
    assert_nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_and_other_request_targets() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let here = format!("http://{}/stg/v1/x", h.gateway);
    let upstream = format!("https://127.0.0.1:{}/api/v1/x", h.upstream.addr.port());
    for target in ["http://evil.example/stg/v1/x", here.as_str(), upstream.as_str()] {
        let r = h.send("GET", target, &[("X-Airlock-Token", &token)], b"").await;
        assert_eq!((r.status, r.code().as_str()), (400, "absolute_uri"), "{target}");
    }
    let r = h.send("CONNECT", "evil.example:443", &[("X-Airlock-Token", &token)], b"").await;
    assert!(r.status == 400, "CONNECT answered {}", r.status);
    let r = h.send("OPTIONS", "*", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!(r.status, 400);
    assert_nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_forwarded_headers_never_route_or_reach_the_upstream() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let r = h
        .send(
            "GET",
            "/stg/v1/x",
            &[
                ("X-Airlock-Token", &token),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Proto", "http"),
                ("Forwarded", "host=evil.example"),
                ("X-Real-IP", "6.6.6.6"),
                ("X-Airlock-Upstream", "prod"),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 200);
    // Host is `gateway` in every request the harness sends; the upstream sees its own.
    let recs = h.records();
    let rec = &recs[0];
    assert_eq!(rec.header("host").unwrap(), format!("127.0.0.1:{}", h.upstream.addr.port()));
    for n in ["x-forwarded-host", "x-forwarded-for", "x-forwarded-proto", "forwarded", "x-real-ip", "x-airlock-upstream", "x-airlock-token"] {
        assert!(rec.header(n).is_none(), "{n} reached the upstream");
    }
    // A Host naming another upstream changes nothing either.
    let raw = h
        .raw(
            format!("GET /stg/v1/y HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nX-Airlock-Token: {token}\r\n\r\n", h.upstream.addr.port()).as_bytes(),
        )
        .await;
    assert!(raw.starts_with(b"HTTP/1.1 200"));
    assert_eq!(h.records()[1].uri, "/api/v1/y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_own_authorization_and_hop_by_hop_abuse() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    // Connection names the credential header and others: the injected credential stays,
    // the agent's token does not travel.
    let r = h
        .send(
            "GET",
            "/stg/v1/x",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Connection", "close, authorization, x-airlock-token, x-keep"),
                ("X-Keep", "dropped"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("TE", "trailers"),
                ("Upgrade", "websocket"),
                ("Keep-Alive", "timeout=5"),
            ],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let recs = h.records();
    let rec = &recs[0];
    assert_eq!(rec.header("authorization").unwrap(), format!("Bearer {}", secret("stg")));
    for n in ["x-keep", "proxy-authorization", "te", "upgrade", "keep-alive"] {
        assert!(rec.header(n).is_none(), "{n} reached the upstream");
    }
    assert!(!contains(&rec.everything(), token.as_bytes()));
    // The agent's own (non-token) Authorization: not a task token, refused, never forwarded.
    let r = h.send("GET", "/stg/v1/x", &[("Authorization", "Bearer sk-agent-found-this-somewhere")], b"").await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_invalid"));
    // Token in X-Airlock-Token plus the agent's own Authorization: the latter is dropped.
    let r = h.send("GET", "/stg/v1/z", &[("X-Airlock-Token", &token), ("Authorization", "Bearer sk-agent-own")], b"").await;
    assert_eq!(r.status, 200);
    let recs = h.records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].header("authorization").unwrap(), format!("Bearer {}", secret("stg")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_te_request_smuggling() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:write"], 600);
    let smuggled = format!("GET /stg/v1/smuggled HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\n\r\n");
    // CL.TE: Content-Length covers the smuggled request, Transfer-Encoding ends the body early.
    let body = format!("0\r\n\r\n{smuggled}");
    let req = format!(
        "POST /stg/v1/first HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let out = h.raw(req.as_bytes()).await;
    // TE.CL order.
    let req2 = format!("POST /stg/v1/first HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{body}");
    let out2 = h.raw(req2.as_bytes()).await;
    // Obfuscated / non-final chunked and conflicting lengths are 400s.
    for bad in [
        format!("POST /stg/v1/a HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        format!("POST /stg/v1/a HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        format!("POST /stg/v1/a HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("POST /stg/v1/a HTTP/1.0\r\nHost: g\r\nX-Airlock-Token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ] {
        let o = h.raw(bad.as_bytes()).await;
        assert!(o.starts_with(b"HTTP/1.1 400"), "accepted: {bad:?} -> {}", String::from_utf8_lossy(&o));
    }
    for o in [&out, &out2] {
        // At most one answer per connection: the gateway closes after an ambiguous framing.
        let answers = o.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        assert_eq!(answers, 1, "{}", String::from_utf8_lossy(o));
    }
    let recs = h.records();
    assert!(recs.iter().all(|r| !r.uri.contains("smuggled")), "smuggled request reached the upstream: {recs:?}");
    // What did reach the upstream has unambiguous framing (no TE+CL pair).
    for r in &recs {
        assert!(!(r.header("content-length").is_some() && r.header("transfer-encoding").is_some()), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_crlf_injection() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read", "crlf:read"], 600);
    // A bare CR or LF inside a header value, and obs-fold continuation lines.
    for bad in [
        format!("GET /stg/v1/x HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nX-A: a\rX-Injected: 1\r\n\r\n"),
        format!("GET /stg/v1/x HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\nX-A: a\r\n X-Injected: 1\r\n\r\n"),
        format!("GET /stg/v1/x\r\nX-Injected: 1 HTTP/1.1\r\nHost: g\r\nX-Airlock-Token: {token}\r\n\r\n"),
    ] {
        let o = h.raw(bad.as_bytes()).await;
        assert!(o.starts_with(b"HTTP/1.1 400"), "accepted: {bad:?} -> {}", String::from_utf8_lossy(&o));
    }
    assert_nothing_forwarded(&h);
    // A vault secret with CRLF can never split the upstream request's headers.
    let r = h.send("GET", "/crlf/v1/x", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (502, "secret_unusable"));
    assert!(!contains(&r.raw, secret("crlf").as_bytes()));
    assert_nothing_forwarded(&h);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_revoked_forged_widened_and_missing_tokens() {
    let h = Harness::start().await;
    let send = |t: String| {
        let h = &h;
        async move { h.send("GET", "/stg/v1/x", &[("X-Airlock-Token", &t)], b"").await }
    };
    let (expired, _) = h.token("staging", &["stg:read"], -5);
    let r = send(expired).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_expired"));

    let (revoked, task) = h.token("staging", &["stg:read"], 600);
    assert_eq!(send(revoked.clone()).await.status, 200);
    h.revocations.insert(&task, "task ended");
    let r = send(revoked).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"));

    let other = airlock_token::TokenAuthority::ephemeral();
    let task_id = uuid::Uuid::now_v7().to_string();
    let grants: Vec<airlock_types::Grant> = vec!["stg:destroy".parse().unwrap()];
    let forged = other
        .mint(&airlock_token::Claims {
            task_id: &task_id,
            agent: "agent-1",
            environment: "staging",
            grants: &grants,
            purpose: None,
            expires_at: time_now() + 600,
        })
        .unwrap();
    let r = send(forged).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_invalid"));

    // Widened: a hand-made attenuation block claiming more than its parent.
    let (parent, _) = h.token("staging", &["stg:read"], 600);
    let biscuit = biscuit_auth::Biscuit::from_base64(parent.strip_prefix("alk_").unwrap(), h.authority.public_key()).unwrap();
    let block = biscuit_auth::builder::BlockBuilder::new().context(format!(r#"{{"v":1,"grants":["stg:destroy"],"exp":{}}}"#, time_now() + 600));
    let widened = format!("alk_{}", biscuit.append(block).unwrap().to_base64().unwrap());
    let r = h.send("DELETE", "/stg/v1/things/1", &[("X-Airlock-Token", &widened)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_widened"));

    // Tampered: one character of the signature changed.
    let (good, _) = h.token("staging", &["stg:read"], 600);
    let mut bytes = good.into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let r = send(String::from_utf8(bytes).unwrap()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_invalid"));

    let r = send("not-a-token".into()).await;
    assert_eq!((r.status, r.code().as_str()), (401, "token_invalid"));
    let r = h.send("GET", "/stg/v1/x", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (401, "missing_token"));
    let j = r.json();
    assert!(j["request_id"].as_str().is_some_and(|s| !s.is_empty()) && j["policies"].is_array());
    assert_eq!(h.records().len(), 1, "only the pre-revocation request may reach the upstream");
    // Refusals are audited too.
    let denied = |a: &[airlock_store::AuditEntry]| a.iter().filter(|e| e.event.outcome == "denied").count();
    let audit = h.audit_until(|a| denied(a) >= 7).await;
    assert!(denied(&audit) >= 7, "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_environments_and_destructive_operations() {
    let h = Harness::start().await;
    // A grant for another upstream.
    let (t, _) = h.token("staging", &["stgq:destroy"], 600);
    let r = h.send("GET", "/stg/v1/x", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_granted"));
    assert!(!r.json()["policies"].as_array().unwrap().is_empty());
    // A read grant does not allow writes or deletes.
    let (t, _) = h.token("staging", &["stg:read"], 600);
    let r = h.send("POST", "/stg/v1/x", &[("X-Airlock-Token", &t)], b"{}").await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_granted"));
    let r = h.send("DELETE", "/stg/v1/volumes/vol-1", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "not_granted"));
    // Unknown methods are the most restrictive class: a destroy whose resource cannot be
    // attributed, so production (cross-environment) as well as not granted.
    let r = h.send("PURGE", "/stg/v1/x", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!(r.status, 403);
    let policies = r.json()["policies"].clone();
    assert!(policies.as_array().unwrap().iter().any(|p| p == "airlock-not-granted"), "{policies}");
    // A staging token on a production upstream, even with a grant naming it.
    let (t, _) = h.token("staging", &["prod:read"], 600);
    let r = h.send("GET", "/prod/v1/x", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "cross_environment"));
    // Destroy in production needs a human (approvals land later: refused for now).
    let (t, _) = h.token("production", &["prod:destroy"], 600);
    let r = h.send("DELETE", "/prod/v1/volumes/vol-prod-db", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "approval_required"));
    // Destroy in staging with a destroy grant is allowed.
    let (t, _) = h.token("staging", &["stg:destroy"], 600);
    let r = h.send("DELETE", "/stg/v1/volumes/vol-1", &[("X-Airlock-Token", &t)], b"").await;
    assert_eq!(r.status, 200);
    let recs = h.records();
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].method.as_str(), recs[0].uri.as_str()), ("DELETE", "/api/v1/volumes/vol-1"));
    let audit = h.audit_until(|a| a.iter().any(|e| e.event.outcome == "allowed")).await;
    let del = audit.iter().find(|e| e.event.outcome == "allowed").unwrap();
    assert_eq!(del.event.subject, "stg/volumeDelete");
    assert_eq!(del.event.detail["resource"], "vol-1");
    assert_eq!(del.event.detail["capability"], "destroy");
}

/// A store whose audit appends fail while `broken` is set (a full disk, a dropped table, a
/// database that went read-only); everything else is the real store.
struct BreakableAudit {
    inner: Arc<dyn Store>,
    broken: Arc<AtomicBool>,
}

impl BreakableAudit {
    fn check(&self) -> airlock_store::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(airlock_store::Error::Corrupt { what: "audit", detail: "disk I/O error (simulated)".into() });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for BreakableAudit {
    async fn append_audit_batch(&self, events: &[AuditEvent]) -> airlock_store::Result<Vec<AuditEntry>> {
        self.check()?;
        self.inner.append_audit_batch(events).await
    }
    async fn append_audit_events(&self, events: &[AuditEvent]) -> airlock_store::Result<i64> {
        self.check()?;
        self.inner.append_audit_events(events).await
    }
    async fn list_audit(&self, f: &AuditFilter) -> airlock_store::Result<Vec<AuditEntry>> {
        self.inner.list_audit(f).await
    }
    async fn health(&self) -> airlock_store::Result<Health> {
        self.inner.health().await
    }
    async fn get_meta(&self, key: &str) -> airlock_store::Result<Option<String>> {
        self.inner.get_meta(key).await
    }
    async fn put_meta_if_absent(&self, key: &str, value: &str) -> airlock_store::Result<bool> {
        self.inner.put_meta_if_absent(key, value).await
    }
    async fn insert_secret(&self, rec: &SecretRecord) -> airlock_store::Result<()> {
        self.inner.insert_secret(rec).await
    }
    async fn find_secrets(&self, name: &str) -> airlock_store::Result<Vec<SecretRecord>> {
        self.inner.find_secrets(name).await
    }
    async fn get_secret(&self, name: &str, environment: &str) -> airlock_store::Result<Option<SecretRecord>> {
        self.inner.get_secret(name, environment).await
    }
    async fn list_secrets(&self) -> airlock_store::Result<Vec<SecretRecord>> {
        self.inner.list_secrets().await
    }
    async fn replace_secret(&self, rec: &SecretRecord, expected_version: i64) -> airlock_store::Result<()> {
        self.inner.replace_secret(rec, expected_version).await
    }
    async fn delete_secret(&self, id: &str) -> airlock_store::Result<()> {
        self.inner.delete_secret(id).await
    }
    async fn insert_task(&self, task: &TaskRecord) -> airlock_store::Result<()> {
        self.inner.insert_task(task).await
    }
    async fn get_task(&self, id: &str) -> airlock_store::Result<Option<TaskRecord>> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self) -> airlock_store::Result<Vec<TaskRecord>> {
        self.inner.list_tasks().await
    }
    async fn end_task(&self, id: &str, at: i64, reason: &str) -> airlock_store::Result<bool> {
        self.inner.end_task(id, at, reason).await
    }
    async fn revocations_since(&self, after: i64) -> airlock_store::Result<Vec<Revocation>> {
        self.inner.revocations_since(after).await
    }
    async fn create_approval(&self, rec: &ApprovalRecord) -> airlock_store::Result<()> {
        self.inner.create_approval(rec).await
    }
    async fn get_approval(&self, id: &str) -> airlock_store::Result<Option<ApprovalRecord>> {
        self.inner.get_approval(id).await
    }
    async fn list_approvals(&self, status: Option<ApprovalStatus>) -> airlock_store::Result<Vec<ApprovalRecord>> {
        self.inner.list_approvals(status).await
    }
    async fn find_approval(&self, task_id: &str, request_hash: &str, now: i64) -> airlock_store::Result<Option<ApprovalRecord>> {
        self.inner.find_approval(task_id, request_hash, now).await
    }
    async fn decide_approval(&self, id: &str, approve: bool, by: &str, note: Option<&str>, at: i64, valid_until: i64) -> airlock_store::Result<ApprovalRecord> {
        self.inner.decide_approval(id, approve, by, note, at, valid_until).await
    }
    async fn consume_approval(&self, task_id: &str, request_hash: &str, now: i64) -> airlock_store::Result<Option<ApprovalRecord>> {
        self.inner.consume_approval(task_id, request_hash, now).await
    }
}

/// Fail closed on the audit log: when the audit store cannot write, an allowed request is
/// refused with `503 audit_unavailable` (JSON, no secret in it) and the upstream never sees
/// it; when the store recovers, the same request passes and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_store_failure_refuses_and_forwards_nothing() {
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let h = Harness::start_with_audit_store(move |inner| Arc::new(BreakableAudit { inner, broken: flag })).await;
    let (token, task_id) = h.token("staging", &["stg:destroy"], 600);
    for (method, path) in [("GET", "/stg/v1/items"), ("POST", "/stg/v1/items"), ("DELETE", "/stg/v1/volumes/vol-1")] {
        let r = h.send(method, path, &[("X-Airlock-Token", &token)], b"").await;
        assert_eq!((r.status, r.code().as_str()), (503, "audit_unavailable"), "{method} {path}: {}", String::from_utf8_lossy(&r.raw));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.json()["message"].as_str().unwrap().contains("not forwarded"), "{}", String::from_utf8_lossy(&r.body));
        assert!(!contains(&r.raw, secret("stg").as_bytes()) && !contains(&r.raw, token.as_bytes()));
    }
    assert_nothing_forwarded(&h);
    assert!(h.store.list_audit(&AuditFilter::default()).await.unwrap().is_empty(), "nothing was committed while broken");

    broken.store(false, Ordering::SeqCst);
    let r = h.send("GET", "/stg/v1/items", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(h.records().len(), 1);
    let request_id = r.header("x-airlock-request-id").unwrap().to_owned();
    let all = h.audit_until(|a| a.iter().any(|e| e.event.id == request_id)).await;
    assert!(all.iter().any(|e| e.event.id == request_id && e.event.task_id.as_deref() == Some(task_id.as_str())));
}

/// A raw credential in a REST body (streamed, not classified) is still found: the first
/// `classify_limit` bytes are read before the decision, whatever the framing; nothing is
/// forwarded and the answer does not repeat the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_credential_in_a_rest_body_never_leaves() {
    const GITHUB_TOKEN: &str = "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";
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:write"], 600);
    // A JSON body with a length: the agent pastes a token it found into a gist.
    let body = format!(r#"{{"files":{{"notes.txt":{{"content":"export GITHUB_TOKEN={GITHUB_TOKEN}"}}}}}}"#);
    let r = h.send("POST", "/stg/v1/gists", &[("X-Airlock-Token", &token), ("Content-Type", "application/json")], body.as_bytes()).await;
    assert_eq!((r.status, r.code().as_str()), (403, "raw_credential"), "{}", String::from_utf8_lossy(&r.raw));
    assert!(!contains(&r.raw, GITHUB_TOKEN.as_bytes()), "the answer echoed the credential");
    // Chunked, with the token split across two chunks.
    let (a, b) = GITHUB_TOKEN.split_at(17);
    let mut req = b"PUT /stg/v1/files/notes HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Airlock-Token: ".to_vec();
    req.extend_from_slice(token.as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    for chunk in [format!("key={a}"), b.to_owned()] {
        req.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = parse(&h.raw(&req).await);
    assert_eq!((r.status, r.code().as_str()), (403, "raw_credential"), "{}", String::from_utf8_lossy(&r.raw));
    assert!(h.records().is_empty(), "a request carrying a raw credential reached the upstream: {:?}", h.records());
    let audit = h.audit_until(|a| a.iter().filter(|e| e.event.action == "gateway.alert").count() >= 2).await;
    let alerts: Vec<_> = audit.iter().filter(|e| e.event.action == "gateway.alert").collect();
    assert!(alerts.iter().all(|e| e.event.detail["location"] == "body" && e.event.detail["kind"] == "github-pat-classic"), "{alerts:?}");
    // An ordinary body still passes, byte for byte.
    let r = h.send("POST", "/stg/v1/upload", &[("X-Airlock-Token", &token)], br#"{"name":"report","size":3}"#).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["received"], 26);
}

/// A REST body whose first bytes never arrive is not waited for forever: `408 body_timeout`
/// within the upstream's request timeout, and nothing reaches the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_rest_body_times_out() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["slow:write"], 600);
    // Announces 100 bytes, sends 10, then waits (the `slow` upstream's timeout is 300 ms).
    let req = format!("POST /slow/v1/upload HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\nX-Airlock-Token: {token}\r\n\r\n0123456789");
    let started = std::time::Instant::now();
    let r = parse(&h.raw(req.as_bytes()).await);
    assert_eq!((r.status, r.code().as_str()), (408, "body_timeout"), "{}", String::from_utf8_lossy(&r.raw));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(h.records().is_empty(), "{:?}", h.records());
}

/// Issue 11: a refusal after the durable decision record (here `secret_unusable`: a vault
/// value that cannot be put in a header) used to
/// be written again under the same request id, failing the whole group-commit batch: every
/// record in it was lost and requests waiting on it got 503. Now it is the request's outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_admission_refusals_among_concurrent_requests_lose_no_record() {
    let h = std::sync::Arc::new(Harness::start().await);
    let (token, task) = h.token("staging", &["stg:read", "crlf:read"], 600);
    let bearer = format!("Bearer {token}");
    let mut joins = Vec::new();
    for i in 0..300 {
        let (h, bearer) = (h.clone(), bearer.clone());
        joins.push(tokio::spawn(async move {
            let target = if i % 5 == 0 { "/crlf/v1/things" } else { "/stg/v1/things" };
            let r = h.send("GET", target, &[("Authorization", &bearer)], b"").await;
            (i % 5 == 0, r.status, r.code())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for j in joins {
        let (is_gone, status, code) = j.await.unwrap();
        if is_gone {
            assert_eq!(code, "secret_unusable", "{status}");
            refused += 1;
        } else {
            assert_eq!(status, 200, "{code}");
            ok += 1;
        }
    }
    assert_eq!((ok, refused), (240, 60));
    // Every request has exactly one decision record and one outcome record; the refused
    // ones say why in their outcome.
    let log = h
        .audit_until(|es| es.iter().filter(|e| e.event.task_id.as_deref() == Some(task.as_str()) && e.event.action == "gateway.response").count() >= 300)
        .await;
    let mine: Vec<_> = log.iter().filter(|e| e.event.task_id.as_deref() == Some(task.as_str())).collect();
    let decisions: Vec<_> = mine.iter().filter(|e| e.event.action == "gateway.request").collect();
    let outcomes: Vec<_> = mine.iter().filter(|e| e.event.action == "gateway.response").collect();
    assert_eq!(decisions.len(), 300, "decision records");
    assert_eq!(outcomes.len(), 300, "outcome records");
    assert_eq!(outcomes.iter().filter(|e| e.event.outcome == "secret_unusable").count(), 60);
    let mut ids: Vec<&str> = decisions.iter().map(|e| e.event.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300, "one decision record per request id");
    for o in &outcomes {
        let rid = o.event.detail["request_id"].as_str().unwrap();
        assert!(ids.binary_search(&rid).is_ok(), "outcome for an unknown request {rid}");
    }
    assert_eq!(h.records().iter().filter(|r| r.uri.contains("/things")).count(), 240, "the refused requests reached nothing");
    let all = h.store.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(airlock_store::chain::verify(airlock_store::chain::GENESIS.into(), 0, &all), Ok(all.len()), "the chain verifies");
}

/// Issue 11: the task token never reaches an upstream, wherever the agent puts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_token_is_refused_wherever_else_it_is_carried() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let encoded = token.replace('_', "%5F");
    let cookie = format!("session={token}");
    let other = format!("Bearer {token}");
    let q1 = format!("/stg/v1/things?api_token={token}");
    let q2 = format!("/stg/v1/things?t={encoded}");
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/stg/v1/things".into(), vec![("X-Airlock-Token", token.as_str()), ("Cookie", cookie.as_str())]),
        ("/stg/v1/things".into(), vec![("X-Airlock-Token", token.as_str()), ("X-Upstream-Auth", other.as_str())]),
        (q1, vec![("X-Airlock-Token", token.as_str())]),
        (q2, vec![("X-Airlock-Token", token.as_str())]),
    ];
    for (target, headers) in &cases {
        let r = h.send("GET", target, headers, b"").await;
        assert_eq!((r.status, r.code().as_str()), (400, "token_misplaced"), "{target} {headers:?}");
    }
    assert!(h.records().is_empty(), "a request carrying the task token reached the upstream");
    // The same request without the extra copy passes.
    let r = h.send("GET", "/stg/v1/things", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!(r.status, 200);
}
