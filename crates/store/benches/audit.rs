//! Audit append cost: one group-commit batch (`Store::append_audit_events`) of N gateway
//! request records on a SQLite file (WAL, `synchronous=FULL`), as the gateway's writer
//! issues it. `cargo bench -p airlock-store --bench audit`
#![allow(missing_docs)]

use std::sync::Arc;

use airlock_store::{AuditEvent, SqliteStore, Store};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn event(i: u64) -> AuditEvent {
    AuditEvent {
        id: format!("0192f0c4-7a1b-7c3d-8e9f-{i:012x}"),
        ts_ms: 1_764_000_000_000 + i as i64,
        actor: "agent:coder".into(),
        action: "gateway.request".into(),
        subject: "github/repos.get".into(),
        outcome: "allowed".into(),
        task_id: Some("tsk_01JD8X3M5Q2W7E9R4T6Y8U0I1O".into()),
        detail: serde_json::json!({
            "method": "GET", "path": "repos/acme/api/issues?state=open", "upstream": "github",
            "environment": "staging", "operation": "repos.get", "capability": "read", "tier": "primary",
            "resource": null, "resource_environment": "staging", "resource_tier": "primary",
            "attribution": "upstream", "operations": [{ "name": "repos.get", "capability": "read", "resource": null }],
            "policies": ["airlock.grants"], "approval_id": null,
        }),
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&dir.path().join("bench.db"))).unwrap());
    let mut g = c.benchmark_group("audit_append_sqlite");
    // Record ids are unique in the log: every batch gets fresh ones (outside the timing).
    let mut next = 0u64;
    for n in [1u64, 32, 128] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    // The gateway's writer checkpoints in the background about once a second
                    // (hundreds of batches), so the log is reused from its start rather than
                    // growing; do the same every 256 batches here.
                    if (next / n).is_multiple_of(256) {
                        rt.block_on(store.checkpoint()).unwrap();
                    }
                    next += n;
                    (next - n..next).map(event).collect::<Vec<_>>()
                },
                |events| rt.block_on(store.append_audit_events(&events)).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
