//! The in-memory revocation set.
//!
//! Owns the copy of the store's revocation feed that verifiers consult on every
//! request, and its refresh: a background task reads new revocations every
//! 250 ms, so ending a task takes effect on every gateway replica within a
//! second. If the feed cannot be refreshed for longer than the allowed
//! staleness, verification fails closed. It must never drop a revocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use airlock_store::Store;

use crate::{Error, Result};

/// Revoked task ids, kept in sync with the store.
#[derive(Debug)]
pub struct Revocations {
    revoked: RwLock<HashMap<String, String>>,
    last_seq: AtomicI64,
    /// Unix ms until which the set counts as fresh; `i64::MAX` when staleness is not enforced.
    fresh_until_ms: AtomicI64,
    max_staleness: Option<Duration>,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl Revocations {
    /// An empty set that never goes stale (one-shot commands that refresh once).
    pub fn new() -> Arc<Self> {
        Arc::new(Self { revoked: RwLock::default(), last_seq: AtomicI64::new(0), fresh_until_ms: AtomicI64::new(i64::MAX), max_staleness: None })
    }

    /// An empty set that fails closed when not refreshed for `max_staleness`
    /// (long-running gateways). Starts stale until the first refresh.
    pub fn with_max_staleness(max_staleness: Duration) -> Arc<Self> {
        Arc::new(Self { revoked: RwLock::default(), last_seq: AtomicI64::new(0), fresh_until_ms: AtomicI64::new(0), max_staleness: Some(max_staleness) })
    }

    /// Pull revocations newer than the last one seen. Returns how many were new.
    pub async fn refresh(&self, store: &dyn Store) -> Result<usize> {
        let after = self.last_seq.load(Ordering::Acquire);
        let new = store.revocations_since(after).await?;
        let n = new.len();
        if let Some(last) = new.last().map(|r| r.seq) {
            let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
            for r in new {
                set.insert(r.task_id, r.reason);
            }
            self.last_seq.store(last, Ordering::Release);
        }
        if let Some(s) = self.max_staleness {
            self.fresh_until_ms.store(now_ms() + s.as_millis() as i64, Ordering::Release);
        }
        Ok(n)
    }

    /// Record a revocation locally (the store remains the source of truth).
    pub fn insert(&self, task_id: &str, reason: &str) {
        self.revoked.write().unwrap_or_else(|p| p.into_inner()).insert(task_id.to_owned(), reason.to_owned());
    }

    /// `Err(Revoked)` if the task is revoked; `Err(Invalid)` if the set is stale (fail closed).
    pub fn check(&self, task_id: &str) -> Result<()> {
        if now_ms() > self.fresh_until_ms.load(Ordering::Acquire) {
            return Err(Error::Invalid(
                "the revocation list could not be refreshed from the store recently; refusing tokens until it can (check `airlock doctor`)".into(),
            ));
        }
        match self.revoked.read().unwrap_or_else(|p| p.into_inner()).get(task_id) {
            Some(reason) => Err(Error::Revoked(task_id.to_owned(), reason.clone())),
            None => Ok(()),
        }
    }

    /// Refresh every `every` until the returned handle is aborted. Errors are
    /// logged (without secrets) and, past the staleness limit, make `check` fail closed.
    pub fn spawn_refresher(self: &Arc<Self>, store: Arc<dyn Store>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = me.refresh(&*store).await {
                    tracing::warn!(error = %e, "cannot refresh revocations");
                }
            }
        })
    }
}
