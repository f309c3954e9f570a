//! Audit from the gateway: durable records before forwarding, with group commit.
//!
//! This module owns the [`AuditSink`] trait the pipeline writes through and
//! [`GroupCommit`], its store-backed implementation: one writer task drains every pending
//! record into a single store transaction (`Store::append_audit_events`: one multi-row
//! `INSERT` per chunk, so a batch costs a handful of database round trips, not one per record) and acknowledges
//! each waiting caller after the commit. Many concurrent requests therefore share one
//! fsync, which keeps "durable record before the upstream sees the request" cheap.
//!
//! It must never put a secret value in a record, and never acknowledge a record that was
//! not committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use airlock_store::{AuditEvent, Store};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A new request or record id: a time-ordered UUIDv7 whose random part comes from the
/// thread-local CSPRNG (`rand::thread_rng`: ChaCha12, reseeded from the OS) rather than a
/// `getrandom` system call per id (`Uuid::now_v7`), which profiles showed once or twice
/// per request. Ids are unique, not secret.
pub fn new_id() -> String {
    let mut random = [0u8; 10];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid().hyphenated().encode_lower(&mut buf).to_owned()
}

/// Why an audit record could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log unavailable: {0}")]
pub struct AuditError(pub String);

/// Where the gateway's audit records go.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    /// Write `event` durably; returns only after it is committed.
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError>;
    /// Queue `event` without waiting for the commit (outcomes, refusals).
    fn record_later(&self, event: AuditEvent);
}

struct Pending {
    event: AuditEvent,
    ack: Option<oneshot::Sender<Result<(), AuditError>>>,
}

/// Counters for the admin status endpoint.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records committed.
    pub committed: AtomicU64,
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Records that failed to commit.
    pub failed: AtomicU64,
}

/// Group-commit audit writer over an [`airlock_store::Store`].
pub struct GroupCommit {
    tx: mpsc::Sender<Pending>,
    stats: Arc<AuditStats>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// How often the writer has the store checkpoint its log (SQLite WAL) in the background.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Records that may wait for the writer before callers feel back-pressure.
const QUEUE: usize = 16 * 1024;

impl GroupCommit {
    /// Start the writer task; batches hold at most `max_batch` records.
    ///
    /// The task ends when every `GroupCommit` clone is dropped, after draining.
    pub fn start(store: Arc<dyn Store>, max_batch: usize) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Pending>(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let st = stats.clone();
        let max_batch = max_batch.max(1);
        let handle = tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(max_batch);
            let mut events: Vec<AuditEvent> = Vec::with_capacity(max_batch);
            // The audit connection never checkpoints inside a commit (see airlock-store's
            // SQLite module); the writer asks for one at most once a second, on a task of
            // its own, so no batch waits for it.
            let checkpointing = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut last_checkpoint = std::time::Instant::now();
            while rx.recv_many(&mut batch, max_batch).await > 0 {
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY && !checkpointing.swap(true, Ordering::AcqRel) {
                    last_checkpoint = std::time::Instant::now();
                    let (store, flag) = (store.clone(), checkpointing.clone());
                    tokio::spawn(async move {
                        if let Err(e) = store.checkpoint().await {
                            tracing::warn!(error = %e, "audit store checkpoint failed; will retry");
                        }
                        flag.store(false, Ordering::Release);
                    });
                }
                events.extend(batch.iter_mut().map(|p| std::mem::replace(&mut p.event, placeholder())));
                let result = store.append_audit_events(&events).await;
                let n = events.len() as u64;
                match result {
                    Ok(_) => {
                        st.committed.fetch_add(n, Ordering::Relaxed);
                        st.batches.fetch_add(1, Ordering::Relaxed);
                        for p in batch.drain(..) {
                            if let Some(ack) = p.ack {
                                let _ = ack.send(Ok(()));
                            }
                        }
                    }
                    Err(e) if events.len() > 1 => {
                        // A failed transaction wrote nothing (the chain is unchanged): commit
                        // the records one by one, so a record the store rejects (a duplicate
                        // id, say) cannot take the others down with it.
                        tracing::warn!(error = %e, records = n, "audit batch failed; committing its records one by one");
                        for (p, ev) in batch.drain(..).zip(events.iter()) {
                            let one = store.append_audit_events(std::slice::from_ref(ev)).await;
                            let r = match one {
                                Ok(_) => {
                                    st.committed.fetch_add(1, Ordering::Relaxed);
                                    st.batches.fetch_add(1, Ordering::Relaxed);
                                    Ok(())
                                }
                                Err(e) => {
                                    st.failed.fetch_add(1, Ordering::Relaxed);
                                    tracing::error!(error = %e, id = %ev.id, action = %ev.action, "audit record rejected by the store");
                                    Err(AuditError(e.to_string()))
                                }
                            };
                            if let Some(ack) = p.ack {
                                let _ = ack.send(r);
                            }
                        }
                    }
                    Err(e) => {
                        st.failed.fetch_add(n, Ordering::Relaxed);
                        tracing::error!(error = %e, records = n, "audit record failed; the request waiting on it is refused");
                        for p in batch.drain(..) {
                            if let Some(ack) = p.ack {
                                let _ = ack.send(Err(AuditError(e.to_string())));
                            }
                        }
                    }
                }
                events.clear();
            }
        });
        (Self { tx, stats }, handle)
    }

    /// Commit counters.
    pub fn stats(&self) -> Arc<AuditStats> {
        self.stats.clone()
    }
}

fn placeholder() -> AuditEvent {
    AuditEvent {
        id: String::new(),
        ts_ms: 0,
        actor: String::new(),
        action: String::new(),
        subject: String::new(),
        outcome: String::new(),
        task_id: None,
        detail: serde_json::Value::Null,
    }
}

#[async_trait::async_trait]
impl AuditSink for GroupCommit {
    async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Pending { event, ack: Some(ack) }).await.map_err(|_| AuditError("the audit writer has stopped".into()))?;
        done.await.map_err(|_| AuditError("the audit writer stopped before committing".into()))?
    }

    fn record_later(&self, event: AuditEvent) {
        match self.tx.try_send(Pending { event, ack: None }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(p).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(p)) => {
                tracing::error!(id = %p.event.id, action = %p.event.action, "audit writer stopped; record lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> AuditEvent {
        AuditEvent {
            id: id.into(),
            ts_ms: 1,
            actor: "t".into(),
            action: "test".into(),
            subject: "s".into(),
            outcome: "ok".into(),
            task_id: None,
            detail: serde_json::json!({}),
        }
    }

    /// A record the store rejects (here: a second record under an existing id) fails alone;
    /// the records batched with it are committed and acknowledged.
    #[tokio::test]
    async fn a_rejected_record_does_not_take_its_batch_down() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(airlock_store::SqliteStore::open(&dir.path().join("a.db")).await.unwrap());
        let (gc, _writer) = GroupCommit::start(store.clone(), 64);
        let gc = Arc::new(gc);
        gc.record(ev("dup")).await.unwrap();
        let mut waits = Vec::new();
        for i in 0..20 {
            let gc = gc.clone();
            let id = if i == 7 { "dup".to_owned() } else { format!("r{i}") };
            waits.push(tokio::spawn(async move { gc.record(ev(&id)).await }));
        }
        let results: Vec<_> = futures_join(waits).await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "{results:?}");
        assert!(results[7].is_err());
        let all = store.list_audit(&airlock_store::AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 20, "19 new records and the first");
        assert_eq!(gc.stats().failed.load(Ordering::Relaxed), 1);
    }

    async fn futures_join(v: Vec<JoinHandle<Result<(), AuditError>>>) -> Vec<Result<(), AuditError>> {
        let mut out = Vec::new();
        for h in v {
            out.push(h.await.unwrap());
        }
        out
    }

    #[test]
    fn ids_are_distinct_v7_uuids() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            let u = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(u.get_version_num(), 7, "{id}");
            assert_eq!(id.len(), 36);
        }
    }
}
