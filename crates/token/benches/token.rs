#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! Task token costs: mint, verify uncached (signature + Datalog), verify cached.
//! Targets (issue 2): cached ≤ 5 µs, uncached ≤ 250 µs.

use std::sync::Arc;
use std::time::Duration;

use airlock_store::SqliteStore;
use airlock_token::{Broker, Claims, Revocations, StartTask, TokenAuthority, Verifier, VerifierOptions};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn airlock_store::Store> = Arc::new(rt.block_on(SqliteStore::open(&dir.path().join("b.db"))).unwrap());
    let authority = TokenAuthority::ephemeral();
    let public = authority.public_key();
    let broker = Broker::new(store.clone(), authority, Duration::from_secs(8 * 3600));
    let req = StartTask {
        agent: airlock_types::Name::parse("agent", "bench-agent").unwrap(),
        environment: "staging".parse().unwrap(),
        grants: vec!["github:read".parse().unwrap(), "railway-staging:write".parse().unwrap()],
        ttl: Duration::from_secs(3600),
        purpose: Some("benchmark".into()),
        actor: "bench".into(),
    };
    let (_, token) = rt.block_on(broker.start_task(&req)).unwrap();
    let verifier = Verifier::new(public, Revocations::new(), VerifierOptions::default());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let grants = req.grants.clone();
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let signer = TokenAuthority::ephemeral();
    c.bench_function("token_mint_sign_only", |b| {
        b.iter(|| {
            signer
                .mint(&Claims {
                    task_id: "0190-task",
                    agent: "bench-agent",
                    environment: "staging",
                    grants: &grants,
                    purpose: Some("benchmark"),
                    expires_at: exp,
                })
                .unwrap()
        })
    });
    c.bench_function("token_mint_with_store", |b| b.iter(|| rt.block_on(broker.start_task(&req)).unwrap()));
    c.bench_function("token_verify_uncached", |b| b.iter(|| verifier.verify_uncached(std::hint::black_box(&token), now).unwrap()));
    verifier.verify(&token).unwrap();
    c.bench_function("token_verify_cached", |b| b.iter(|| verifier.verify(std::hint::black_box(&token)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
