#![allow(missing_docs)] // criterion_group! generates an undocumented fn
//! Secret decrypt latency: one `Vault::open` of a sealed 40-byte token
//! (unwrap the data key, then open the value), as the gateway does per request.

use std::sync::Arc;

use airlock_store::SqliteStore;
use airlock_vault::{MasterKey, NewSecret, SecretValue, Vault};
use criterion::{Criterion, criterion_group, criterion_main};
use zeroize::Zeroizing;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(SqliteStore::open(&dir.path().join("b.db"))).unwrap();
    let store: Arc<dyn airlock_store::Store> = Arc::new(store);
    let vault = Vault::new(store.clone(), MasterKey::generate());
    let spec = NewSecret {
        name: airlock_types::Name::parse("secret", "gh").unwrap(),
        environment: "staging".parse().unwrap(),
        tier: airlock_types::Tier::Primary,
        upstream: airlock_types::Name::parse("upstream", "github").unwrap(),
        description: None,
    };
    let value = SecretValue::new(Zeroizing::new(b"ghp_0123456789abcdefghijklmnopqrstuvwxyz".to_vec()));
    rt.block_on(vault.add(&spec, &value)).unwrap();
    let rec = rt.block_on(vault.find("gh", None)).unwrap();
    c.bench_function("vault_decrypt_open", |b| b.iter(|| vault.open(std::hint::black_box(&rec)).unwrap()));
    c.bench_function("vault_get_sqlite", |b| b.iter(|| rt.block_on(vault.get("gh", None)).unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
