//! Allowed requests: the real credential is injected, the task token never reaches the
//! upstream, the audit record is durable before the upstream sees the request, and
//! echoes of the credential are redacted.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_read_injects_the_real_credential() {
    let h = Harness::start().await;
    let (token, task_id) = h.token("staging", &["stg:read"], 600);
    let r = h.send("GET", "/stg/v1/items?page=2&q=a%20b", &[("Authorization", &format!("Bearer {token}"))], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.raw));
    assert_eq!(r.json()["ok"], true);
    let request_id = r.header("x-airlock-request-id").unwrap().to_owned();

    let recs = h.records();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.uri, "/api/v1/items?page=2&q=a%20b");
    assert_eq!(rec.header("authorization").unwrap(), format!("Bearer {}", secret("stg")));
    assert_eq!(rec.header("host").unwrap(), format!("127.0.0.1:{}", h.upstream.addr.port()));
    assert_eq!(rec.header("accept-encoding").as_deref(), Some("identity"));
    assert!(!contains(&rec.everything(), token.as_bytes()), "task token reached the upstream");
    assert!(rec.audited_before, "the audit record was not committed before the upstream saw the request");

    let audit = h.audit_until(|a| a.iter().any(|e| e.event.action == "gateway.response")).await;
    let req = audit.iter().find(|e| e.event.id == request_id).expect("request audited under the request id");
    assert_eq!(req.event.outcome, "allowed");
    assert_eq!(req.event.task_id.as_deref(), Some(task_id.as_str()));
    assert_eq!(req.event.subject, "stg/GET /v1/items");
    let out = audit.iter().find(|e| e.event.action == "gateway.response").expect("outcome audited");
    assert_eq!(out.event.detail["request_id"], request_id.as_str());
    assert_eq!(out.event.detail["status"], 200);
    assert_eq!(out.event.outcome, "ok");
    assert!(out.event.detail["bytes"].as_u64().unwrap() > 0);
    for e in &audit {
        let text = serde_json::to_string(&e.event).unwrap();
        assert!(!text.contains(secret("stg")) && !text.contains(&token), "secret or token in audit: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_x_airlock_token_and_other_injection_styles() {
    let h = Harness::start().await;
    // X-Airlock-Token, header injection into x-api-key (production upstream, read).
    let (ptok, _) = h.token("production", &["prod:read"], 600);
    let r = h.send("GET", "/prod/v1/x", &[("X-Airlock-Token", &ptok), ("x-api-key", "agent-own-key")], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Query injection: the phantom token sits in the query param and is replaced.
    let (stok, _) = h.token("staging", &["stgq:read", "stgb:read"], 600);
    let r = h.send("GET", &format!("/stgq/v1/y?a=1&api_key={stok}&b=2"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Basic: the token is the password.
    let basic = base64_encode(&format!("x:{stok}"));
    let r = h.send("GET", "/stgb/v1/z", &[("Authorization", &format!("Basic {basic}"))], b"").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    let recs = h.records();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].header("x-api-key").unwrap(), secret("prod"));
    assert!(recs[0].header("x-airlock-token").is_none());
    let enc: String = percent_encoding::utf8_percent_encode(secret("stgq"), percent_encoding::NON_ALPHANUMERIC).to_string().replace("%2D", "-");
    assert_eq!(recs[1].uri, format!("/api/v1/y?a=1&b=2&api_key={enc}"));
    assert_eq!(recs[2].header("authorization").unwrap(), format!("Basic {}", base64_encode(&format!("svc:{}", secret("stgb")))));
    for (rec, tok) in [(&recs[0], &ptok), (&recs[1], &stok), (&recs[2], &stok)] {
        assert!(!contains(&rec.everything(), tok.as_bytes()), "task token reached the upstream: {rec:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_echoed_by_the_upstream_is_redacted() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read", "stgq:read", "stgb:read"], 600);
    for (path, up) in [("/stg/echo", "stg"), (&*format!("/stgq/echo?api_key={token}"), "stgq"), ("/stgb/echo", "stgb")] {
        let r = h.send("GET", path, &[("Authorization", &format!("Bearer {token}")), ("X-Airlock-Token", &token)], b"").await;
        assert_eq!(r.status, 200);
        let s = secret(up).as_bytes();
        assert!(!contains(&r.raw, s), "secret of {up} echoed to the agent: {}", String::from_utf8_lossy(&r.raw));
        let b64 = base64_encode(&format!("svc:{}", secret(up)));
        assert!(!contains(&r.raw, b64.as_bytes()), "basic credential echoed");
        let body = String::from_utf8_lossy(&r.body);
        assert!(body.starts_with("you sent: ") && body.contains('*') && body.ends_with(" (end)"), "{body}");
    }
    let r = h.send("GET", "/stg/echo", &[("Authorization", &format!("Bearer {token}"))], b"").await;
    assert_eq!(r.header("x-echo-auth"), Some("[redacted by airlock]"));
    let redacted = |a: &[airlock_store::AuditEntry]| a.iter().any(|e| e.event.action == "gateway.response" && e.event.detail["redactions"].as_u64() >= Some(1));
    assert!(redacted(&h.audit_until(redacted).await));
}

/// Issue 11: an echo of the secret in another encoding (base64 at another alignment, inside
/// base64 JSON, percent-encoded, JSON-escaped, `\u`-escaped, hex) or in the status line's
/// reason phrase never reaches the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_echoes_and_the_reason_phrase_are_redacted() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let r = h.send("GET", "/stg/v1/echo-encoded", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!(r.status, 200);
    let status_line = String::from_utf8_lossy(&r.raw[..r.raw.iter().position(|b| *b == b'\r').unwrap()]).into_owned();
    assert_eq!(status_line, "HTTP/1.1 200 OK", "a non-canonical reason phrase passed");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 6, "{body}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.contains("****"), "form {i} not masked: {l}");
    }
    // Masking keeps lengths: nothing of the secret in any of its forms is left.
    let s = secret("stg");
    use base64::Engine as _;
    for form in [s.to_owned(), hex::encode(s), percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()] {
        assert!(!body.contains(&form), "{form} in {body}");
    }
    let mut shifted = b"x".to_vec();
    shifted.extend_from_slice(s.as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&shifted);
    assert!(!body.contains(&b64[4..b64.len() - 4]), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_is_passed_back_not_followed() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let r = h.send("GET", "/stg/v1/redirect", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("https://evil.example/steal"));
    assert_eq!(h.records().len(), 1, "the redirect was followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_504_with_the_same_shape() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["dead:read", "slow:read", "stg:read"], 600);
    let r = h.send("GET", "/dead/x", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (502, "upstream_unreachable"));
    let r = h.send("GET", "/slow/v1/slow-wait", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (504, "upstream_timeout"));
    let j = r.json();
    assert!(j["request_id"].is_string() && j["message"].is_string() && j["policies"].is_array());
    let r = h.send("GET", "/stg/v1/gzip", &[("X-Airlock-Token", &token)], b"").await;
    assert_eq!((r.status, r.code().as_str()), (502, "upstream_encoded_response"));
    for s in ["dead", "slow", "stg"] {
        assert!(!contains(&r.raw, secret(s).as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_and_are_capped() {
    let h = Harness::start().await;
    let (token, _) = h.token("staging", &["stg:write", "small:write"], 600);
    let big = vec![b'x'; 8 << 20];
    let r = h.send("POST", "/stg/v1/upload", &[("X-Airlock-Token", &token)], &big).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["received"], 8 << 20);
    let r = h.send("POST", "/small/v1/upload", &[("X-Airlock-Token", &token)], &[b'y'; 2048]).await;
    assert_eq!((r.status, r.code().as_str()), (413, "body_too_large"));
    // Chunked (no length up front): the cap is enforced while streaming.
    let mut req = b"POST /small/v1/upload HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Airlock-Token: ".to_vec();
    req.extend_from_slice(token.as_bytes());
    req.extend_from_slice(b"\r\n\r\n800\r\n");
    req.extend_from_slice(&[b'z'; 0x800]);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let raw = h.raw(&req).await;
    assert!(raw.starts_with(b"HTTP/1.1 413"), "{}", String::from_utf8_lossy(&raw));
    assert_eq!(parse(&raw).code(), "body_too_large");
    // Nothing of it reached the upstream: not cut off at the cap and forwarded (issue 11).
    let recs = h.records();
    assert!(recs.iter().all(|r| !r.uri.contains("/small/") && !r.uri.ends_with("v1/upload") || r.body_len == 8 << 20), "{recs:?}");
    assert_eq!(recs.len(), 1, "only the 8 MiB upload to stg: {recs:?}");
    // The same over several small chunks, each under the cap.
    let mut req = b"POST /small/v1/upload HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Airlock-Token: ".to_vec();
    req.extend_from_slice(token.as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    for _ in 0..3 {
        req.extend_from_slice(b"190\r\n");
        req.extend_from_slice(&[b'w'; 0x190]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert!(h.raw(&req).await.starts_with(b"HTTP/1.1 413"));
    assert_eq!(h.records().len(), 1);
    // A body exactly at the cap passes.
    let r = h.send("POST", "/small/v1/upload", &[("X-Airlock-Token", &token)], &[b'y'; 1024]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["received"], 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_only_on_the_admin_port() {
    let h = Harness::start().await;
    let r = parse(&raw(h.admin, &request("GET", "/healthz", &[], b"")).await);
    assert_eq!(r.status, 200);
    let r = parse(&raw(h.admin, &request("GET", "/v1/status", &[], b"")).await);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["upstreams"][0]["name"], "stg");
    // The agent-facing port has no admin routes, and the admin port proxies nothing.
    let r = h.send("GET", "/healthz", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_upstream"));
    let r = h.send("GET", "/v1/status", &[], b"").await;
    assert_eq!(r.status, 404);
    let (token, _) = h.token("staging", &["stg:read"], 600);
    let r = parse(&raw(h.admin, &request("GET", "/stg/v1/items", &[("X-Airlock-Token", &token)], b"")).await);
    assert_eq!(r.status, 404);
    assert!(h.records().is_empty());
}

pub fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
