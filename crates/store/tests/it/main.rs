//! Store integration tests against real SQLite files in temp directories.

use std::sync::Arc;

use airlock_store::{ApprovalRecord, ApprovalStatus, AuditEvent, AuditFilter, Error, PgStore, SecretRecord, SqliteStore, Store, TaskRecord, chain};

/// The PostgreSQL server the tests use (started by `.ci/run`; this machine kind runs one).
fn pg_url() -> String {
    std::env::var("AIRLOCK_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema per test so tests never see each other's rows.
fn fresh_schema() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("t_{}_{}_{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// One store of each backend. A PostgreSQL that cannot be reached fails the test:
/// the suite's contract is that both backends are exercised.
async fn stores() -> Vec<(tempfile::TempDir, Arc<dyn Store>)> {
    let d = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&d.path().join("a.db")).await.unwrap());
    let pg: Arc<dyn Store> = Arc::new(
        PgStore::connect_in_schema(&pg_url(), Some(&fresh_schema()))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is required for the store tests: {e}", pg_url())),
    );
    vec![(d, sqlite), (tempfile::tempdir().unwrap(), pg)]
}

fn secret(name: &str, env: &str) -> SecretRecord {
    SecretRecord {
        id: format!("{name}-{env}"),
        name: name.into(),
        environment: env.into(),
        tier: "primary".into(),
        upstream: "github".into(),
        description: None,
        version: 1,
        key_id: "k".into(),
        wrapped_key: vec![1; 40],
        nonce: vec![2; 24],
        ciphertext: vec![3; 20],
        created_at: 1,
        updated_at: 1,
    }
}

fn event(n: usize, task: Option<&str>) -> AuditEvent {
    AuditEvent {
        id: uuid_like(n),
        ts_ms: n as i64,
        actor: "test".into(),
        action: if n.is_multiple_of(2) { "gateway.request".into() } else { "task.start".into() },
        subject: format!("s{n}"),
        outcome: "ok".into(),
        task_id: task.map(str::to_owned),
        detail: serde_json::json!({ "n": n }),
    }
}

fn uuid_like(n: usize) -> String {
    format!("{:08}-{}", n, std::process::id())
}

#[tokio::test]
async fn schema_is_migrated_and_healthy() {
    for (_d, s) in stores().await {
        let h = s.health().await.unwrap();
        assert_eq!(h.schema_version, 3);
        match h.backend {
            "sqlite" => assert!(h.detail.contains("journal_mode=wal"), "{}", h.detail),
            "postgres" => assert!(h.detail.contains("server_version="), "{}", h.detail),
            other => panic!("unexpected backend {other}"),
        }
    }
}

#[tokio::test]
async fn open_existing_refuses_a_missing_file() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(SqliteStore::open_existing(&d.path().join("missing.db")).await, Err(Error::Open { .. })));
}

#[tokio::test]
async fn secrets_are_unique_per_environment_and_versioned() {
    for (_d, s) in stores().await {
        s.insert_secret(&secret("gh", "staging")).await.unwrap();
        s.insert_secret(&secret("gh", "production")).await.unwrap();
        let mut dup = secret("gh", "staging");
        dup.id = "other".into();
        assert!(matches!(s.insert_secret(&dup).await, Err(Error::DuplicateSecret { .. })));
        assert_eq!(s.find_secrets("gh").await.unwrap().len(), 2);
        let mut r = s.get_secret("gh", "staging").await.unwrap().unwrap();
        r.version = 2;
        r.ciphertext = vec![9; 20];
        s.replace_secret(&r, 1).await.unwrap();
        // A second writer holding the old version loses.
        assert!(matches!(s.replace_secret(&r, 1).await, Err(Error::NotFound { .. })));
        assert_eq!(s.get_secret("gh", "staging").await.unwrap().unwrap().ciphertext, vec![9; 20]);
        s.delete_secret(&r.id).await.unwrap();
        assert!(matches!(s.delete_secret(&r.id).await, Err(Error::NotFound { .. })));
        assert_eq!(s.list_secrets().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn ending_a_task_feeds_the_revocation_list_once() {
    for (_d, s) in stores().await {
        let t = TaskRecord {
            id: "t1".into(),
            agent: "a".into(),
            environment: "staging".into(),
            grants: vec!["github:read".into()],
            purpose: None,
            created_at: 1,
            expires_at: 100,
            ended_at: None,
            created_by: "test".into(),
        };
        s.insert_task(&t).await.unwrap();
        assert!(matches!(s.insert_task(&t).await, Err(Error::DuplicateTask(_))));
        assert!(s.end_task("t1", 5, "done").await.unwrap());
        assert!(!s.end_task("t1", 6, "again").await.unwrap());
        assert!(matches!(s.end_task("nope", 6, "x").await, Err(Error::NotFound { .. })));
        let revs = s.revocations_since(0).await.unwrap();
        assert_eq!(revs.len(), 1);
        assert_eq!(revs[0].task_id, "t1");
        assert!(s.revocations_since(revs[0].seq).await.unwrap().is_empty());
        assert_eq!(s.get_task("t1").await.unwrap().unwrap().ended_at, Some(5));
    }
}

/// Two independent connections pools on one file (as two processes would have)
/// appending concurrently never fork or break the chain.
#[tokio::test]
async fn concurrent_writers_keep_one_chain() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("a.db");
    let schema = fresh_schema();
    let pairs: Vec<(Arc<dyn Store>, Arc<dyn Store>)> = vec![
        (Arc::new(SqliteStore::open(&path).await.unwrap()), Arc::new(SqliteStore::open(&path).await.unwrap())),
        (
            Arc::new(PgStore::connect_in_schema(&pg_url(), Some(&schema)).await.unwrap()),
            Arc::new(PgStore::connect_in_schema(&pg_url(), Some(&schema)).await.unwrap()),
        ),
    ];
    for (a, b) in pairs {
        let mut handles = Vec::new();
        for w in 0..8 {
            let s = if w % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                for i in 0..25 {
                    let n = w * 1000 + i;
                    if i % 5 == 0 {
                        s.append_audit_batch(&[event(n, None), event(n + 500, Some("t"))]).await.unwrap();
                    } else {
                        s.append_audit(&event(n, None)).await.unwrap();
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let all = a.list_audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 8 * 30);
        assert_eq!(chain::verify(chain::GENESIS.into(), 0, &all), Ok(all.len()));
    }
}

/// Batches larger than one multi-row INSERT (and not a power of two) chain across chunk
/// boundaries; both append methods store every field and link every entry.
#[tokio::test]
async fn large_audit_batches_chain_across_chunks() {
    for (_d, s) in stores().await {
        s.append_audit(&event(0, None)).await.unwrap();
        let big: Vec<_> = (1..=603).map(|n| event(n, n.is_multiple_of(3).then_some("t"))).collect();
        assert_eq!(s.append_audit_events(&big).await.unwrap(), 604);
        let more: Vec<_> = (1000..1300).map(|n| event(n, None)).collect();
        let returned = s.append_audit_batch(&more).await.unwrap();
        assert_eq!(s.append_audit_events(&[]).await.unwrap(), 0);
        let all = s.list_audit(&AuditFilter::default()).await.unwrap();
        assert_eq!(all.len(), 1 + 603 + 300);
        assert_eq!(chain::verify(chain::GENESIS.into(), 0, &all), Ok(all.len()));
        assert_eq!(&all[604..], &returned[..]);
        for (stored, sent) in all.iter().zip(std::iter::once(&event(0, None)).chain(&big).chain(&more)) {
            assert_eq!(&stored.event, sent);
        }
    }
}

#[tokio::test]
async fn audit_filters() {
    for (_d, s) in stores().await {
        let evs: Vec<_> = (1..=10).map(|n| event(n, if n > 5 { Some("t9") } else { None })).collect();
        let stored = s.append_audit_batch(&evs).await.unwrap();
        assert_eq!(stored.last().unwrap().seq, 10);
        let by_task = s.list_audit(&AuditFilter { task_id: Some("t9".into()), ..Default::default() }).await.unwrap();
        assert_eq!(by_task.len(), 5);
        // The task form of the query (served by the task index) with every other filter.
        let narrowed = s
            .list_audit(&AuditFilter { task_id: Some("t9".into()), action_prefix: Some("gateway.".into()), after_seq: Some(0), limit: Some(2) })
            .await
            .unwrap();
        // t9's gateway records are seq 6, 8 and 10: the newest two, oldest first.
        assert_eq!(narrowed.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 10]);
        let by_action = s.list_audit(&AuditFilter { action_prefix: Some("gateway.".into()), ..Default::default() }).await.unwrap();
        assert_eq!(by_action.len(), 5);
        // `_` in a prefix is literal, not a wildcard.
        let none = s.list_audit(&AuditFilter { action_prefix: Some("gateway_".into()), ..Default::default() }).await.unwrap();
        assert!(none.is_empty());
        let newest = s.list_audit(&AuditFilter { limit: Some(3), ..Default::default() }).await.unwrap();
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10]);
        let after = s.list_audit(&AuditFilter { after_seq: Some(7), ..Default::default() }).await.unwrap();
        assert_eq!(after.len(), 3);
        assert!(s.append_audit_batch(&[]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn meta_insert_if_absent() {
    for (_d, s) in stores().await {
        assert!(s.put_meta_if_absent("k", "v1").await.unwrap());
        assert!(!s.put_meta_if_absent("k", "v2").await.unwrap());
        assert_eq!(s.get_meta("k").await.unwrap().as_deref(), Some("v1"));
        assert_eq!(s.get_meta("missing").await.unwrap(), None);
    }
}

fn approval(id: &str, hash: &str, expires_at: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        created_at: 10,
        task_id: "task-1".into(),
        agent: "coder".into(),
        upstream: "railway-staging".into(),
        operation: "volumeDelete".into(),
        resource: Some("vol-staging-db".into()),
        environment: "staging".into(),
        request_hash: hash.into(),
        reason: "destroy in production needs a human".into(),
        status: ApprovalStatus::Pending,
        decided_by: None,
        decided_at: None,
        decision_note: None,
        expires_at,
        used_at: None,
    }
}

#[tokio::test]
async fn approvals_are_decided_once_and_consumed_once() {
    for (_d, s) in stores().await {
        s.create_approval(&approval("ap-1", "h1", 100)).await.unwrap();
        s.create_approval(&approval("ap-2", "h2", 100)).await.unwrap();
        assert_eq!(s.list_approvals(Some(ApprovalStatus::Pending)).await.unwrap().len(), 2);
        assert_eq!(s.find_approval("task-1", "h1", 50).await.unwrap().unwrap().id, "ap-1");
        assert!(s.find_approval("task-1", "h1", 101).await.unwrap().is_none(), "expired requests are not found");
        // Nothing to consume while pending.
        assert!(s.consume_approval("task-1", "h1", 50).await.unwrap().is_none());
        let a = s.decide_approval("ap-1", true, "admin:root", None, 60, 600).await.unwrap();
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert_eq!(a.expires_at, 600);
        // Deciding twice is refused.
        assert!(matches!(s.decide_approval("ap-1", false, "admin:root", Some("no"), 61, 600).await, Err(Error::NotFound { .. })));
        // Another task, or another request, cannot use it.
        assert!(s.consume_approval("task-2", "h1", 70).await.unwrap().is_none());
        assert!(s.consume_approval("task-1", "h-other", 70).await.unwrap().is_none());
        // Exactly once.
        let used = s.consume_approval("task-1", "h1", 70).await.unwrap().unwrap();
        assert_eq!(used.status, ApprovalStatus::Used);
        assert!(s.consume_approval("task-1", "h1", 71).await.unwrap().is_none());
        // Denied approvals are never consumable.
        let d = s.decide_approval("ap-2", false, "admin:root", Some("not today"), 60, 600).await.unwrap();
        assert_eq!((d.status, d.decision_note.as_deref()), (ApprovalStatus::Denied, Some("not today")));
        assert!(s.consume_approval("task-1", "h2", 70).await.unwrap().is_none());
        // An approval past its deadline cannot be used.
        s.create_approval(&approval("ap-3", "h3", 100)).await.unwrap();
        s.decide_approval("ap-3", true, "admin:root", None, 60, 80).await.unwrap();
        assert!(s.consume_approval("task-1", "h3", 81).await.unwrap().is_none());
        assert!(matches!(s.decide_approval("missing", true, "a", None, 1, 2).await, Err(Error::NotFound { .. })));
    }
}
