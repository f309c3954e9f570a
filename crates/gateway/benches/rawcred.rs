#![allow(missing_docs)]
//! Raw-credential check cost per request (issue 5): the default check (the scanner's engine,
//! high-confidence rules, plus the strict built-in formats) next to the built-in formats
//! alone, over a realistic header set with a real task token, and over request bodies up to
//! the classification cap (only buffered GraphQL/MCP bodies are scanned).

use std::hint::black_box;

use airlock_gateway::RawCredentialCheck;
use airlock_gateway::rawcred::{BuiltinDetector, ScannerDetector};
use airlock_token::{Claims, TokenAuthority};
use airlock_types::Grant;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};

fn task_token() -> String {
    let grants: Vec<Grant> = vec!["railway-staging:read".parse().unwrap(), "railway-staging:volumeDelete".parse().unwrap()];
    TokenAuthority::ephemeral()
        .mint(&Claims {
            task_id: "0193a5f2-7c1e-7d3a-9f4b-2a1c3e5d7f90",
            agent: "coder",
            environment: "staging",
            grants: &grants,
            purpose: Some("bench"),
            expires_at: 4_000_000_000,
        })
        .unwrap()
}

fn headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "backboard.railway.app".to_owned()),
        ("user-agent", "curl/8.5.0".to_owned()),
        ("accept", "application/json".to_owned()),
        ("content-type", "application/json".to_owned()),
        ("content-length", "1024".to_owned()),
        ("authorization", format!("Bearer {token}")),
        ("x-request-id", "0193a5f2-7c1e-7d3a-9f4b-2a1c3e5d7f90".to_owned()),
        ("accept-encoding", "gzip, deflate, br".to_owned()),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_str(&v).unwrap());
    }
    h
}

/// A GraphQL JSON body of about `len` bytes with ordinary content (ids, names, a cursor).
fn body(len: usize) -> Vec<u8> {
    let mut q = String::from("query Dashboard($env: String, $after: String) { ");
    let mut i = 0;
    while q.len() + 120 < len {
        q.push_str(&format!("v{i}: volumes(environment: $env, after: $after) {{ id name sizeGb backups {{ id createdAt }} }} "));
        i += 1;
    }
    q.push('}');
    serde_json::to_vec(
        &serde_json::json!({ "query": q, "variables": { "env": "staging", "after": "dm9sLXByb2QtZGI6MTcwMDAwMDAwMA==" }, "operationName": "Dashboard" }),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let token = task_token();
    let h = headers(&token);
    let target = "/railway-staging/graphql";
    let scanner = ScannerDetector::shared().unwrap();
    let builtin = BuiltinDetector::new();
    assert!(scanner.check(&h, target, None).is_none());
    let mut g = c.benchmark_group("rawcred");
    g.bench_function("headers/builtin_only", |b| b.iter(|| black_box(builtin.check(black_box(&h), target, None))));
    g.bench_function("headers/scanner_default", |b| b.iter(|| black_box(scanner.check(black_box(&h), target, None))));
    for len in [1 << 10, 10 << 10, 100 << 10, 1 << 20] {
        let body = body(len);
        assert!(scanner.check(&h, target, Some(&body)).is_none(), "false positive on an ordinary {len}-byte body");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("headers+body_{}k/builtin_only", len >> 10), |b| b.iter(|| black_box(builtin.check(&h, target, Some(black_box(&body))))));
        g.bench_function(format!("headers+body_{}k/scanner_default", len >> 10), |b| b.iter(|| black_box(scanner.check(&h, target, Some(black_box(&body))))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
