#![allow(missing_docs)]
//! GraphQL classification cost: parse and classify a ~10 KB query document.

use std::hint::black_box;

use airlock_gateway::graphql::{GraphqlClassifier, GraphqlRule};
use airlock_types::{Capability, Tier};
use criterion::{Criterion, criterion_group, criterion_main};

fn body() -> Vec<u8> {
    let mut q = String::from("query Dashboard($env: String) { ");
    let mut i = 0;
    while q.len() < 9_800 {
        q.push_str(&format!("v{i}: volumes(environment: $env) {{ id name environment backups {{ id volumeId }} }} "));
        i += 1;
    }
    q.push_str("...Me } fragment Me on Query { me { name teams } }");
    serde_json::to_vec(&serde_json::json!({ "query": q, "variables": { "env": "staging" }, "operationName": "Dashboard" })).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = GraphqlClassifier::new();
    g.declare("volumeDelete", GraphqlRule { capability: Capability::Destroy, tier: Tier::Primary, resource: Some(vec!["volumeId".into()]) }).unwrap();
    g.declare("backupDelete", GraphqlRule { capability: Capability::Destroy, tier: Tier::Backup, resource: Some(vec!["backupId".into()]) }).unwrap();
    let body = body();
    assert!((9_500..11_000).contains(&body.len()), "{}", body.len());
    let ops = g.classify(&body, Some("application/json")).unwrap();
    assert!(ops.iter().all(|o| o.capability == Capability::Read));
    let mut grp = c.benchmark_group("graphql");
    // Cold: the document is parsed on every request (a document the gateway has not seen).
    let cold = g.clone().without_cache();
    grp.bench_function("classify_10k_query", |b| b.iter(|| black_box(cold.classify(black_box(&body), Some("application/json")).unwrap())));
    // Warm: the same document again (clients resend their documents with new variables).
    grp.bench_function("classify_10k_query_cached", |b| b.iter(|| black_box(g.classify(black_box(&body), Some("application/json")).unwrap())));
    // Where the time goes: the strict JSON parse and the GraphQL parse alone.
    grp.bench_function("parts/json_strict_10k", |b| b.iter(|| black_box(airlock_gateway::classify::parse_json_strict(black_box(&body)).unwrap())));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let q = v["query"].as_str().unwrap().to_owned();
    grp.bench_function("parts/graphql_parse_10k", |b| b.iter(|| black_box(cynic_parser::parse_executable_document(black_box(&q)).unwrap())));
    // The parser the classifier used before (still used to validate configured lookup queries).
    grp.bench_function("parts/graphql_parse_10k_async_graphql_parser", |b| b.iter(|| black_box(async_graphql_parser::parse_query(black_box(&q)).unwrap())));
    let mutation = serde_json::to_vec(&serde_json::json!({
        "query": "mutation D($id: ID!) { a: volumeDelete(volumeId: $id) ...F } fragment F on Mutation { backupDelete(backupId: \"bkp-prod-db-1\") }",
        "variables": { "id": "vol-prod-db" }
    }))
    .unwrap();
    grp.bench_function("classify_small_mutation", |b| b.iter(|| black_box(cold.classify(black_box(&mutation), Some("application/json")).unwrap())));
    grp.bench_function("classify_small_mutation_cached", |b| b.iter(|| black_box(g.classify(black_box(&mutation), Some("application/json")).unwrap())));
    grp.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
