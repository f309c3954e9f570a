//! Integration tests for task tokens: mint, verify, attenuate, revoke — and every
//! way a token can be bad.

use std::sync::Arc;
use std::time::Duration;

use airlock_store::{SqliteStore, Store};
use airlock_token::{Broker, Error, Revocations, StartTask, TokenAuthority, Verifier, VerifierOptions, attenuate, inspect};
use biscuit_auth::builder::BlockBuilder;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    broker: Broker,
    public: biscuit_auth::PublicKey,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    let authority = TokenAuthority::ephemeral();
    let public = authority.public_key();
    let broker = Broker::new(store.clone(), authority, Duration::from_secs(8 * 3600));
    Env { _dir: dir, store, broker, public }
}

fn req(grants: &[&str], ttl: u64) -> StartTask {
    StartTask {
        agent: airlock_types::Name::parse("agent", "coder").unwrap(),
        environment: "staging".parse().unwrap(),
        grants: grants.iter().map(|g| g.parse().unwrap()).collect(),
        ttl: Duration::from_secs(ttl),
        purpose: Some("fix the build".into()),
        actor: "test".into(),
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn verifier(e: &Env) -> Verifier {
    Verifier::new(e.public, Revocations::new(), VerifierOptions::default())
}

#[tokio::test]
async fn mint_and_verify_round_trip() {
    let e = env().await;
    let (task, token) = e.broker.start_task(&req(&["github:read", "railway-staging:write"], 600)).await.unwrap();
    assert!(token.starts_with("alk_"));
    let v = verifier(&e).verify(&token).unwrap();
    assert_eq!(v.task_id, task.id);
    assert_eq!(v.agent.as_str(), "coder");
    assert_eq!(v.environment.as_str(), "staging");
    assert_eq!(v.grants.iter().map(ToString::to_string).collect::<Vec<_>>(), ["github:read", "railway-staging:write"]);
    assert_eq!(v.purpose.as_deref(), Some("fix the build"));
    assert_eq!(v.expires_at, task.expires_at);
    assert_eq!(v.attenuations, 0);
    // The task and its audit record are in the store.
    assert_eq!(e.store.get_task(&task.id).await.unwrap().unwrap(), task);
    let audit = e.store.list_audit(&Default::default()).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.action, "task.start");
    assert!(!serde_json::to_string(&audit[0]).unwrap().contains(&token), "audit must not hold the token");
}

#[tokio::test]
async fn forged_token_from_another_key_is_refused() {
    let e = env().await;
    let other = env().await;
    let (_, token) = other.broker.start_task(&req(&["github:read"], 600)).await.unwrap();
    assert!(matches!(verifier(&e).verify(&token), Err(Error::Forged)));
}

#[tokio::test]
async fn truncated_altered_and_foreign_inputs_are_refused() {
    let e = env().await;
    let (_, token) = e.broker.start_task(&req(&["github:read"], 600)).await.unwrap();
    let v = verifier(&e);
    let truncated = &token[..token.len() - 10];
    assert!(matches!(v.verify(truncated), Err(Error::Malformed(_) | Error::Forged)), "{:?}", v.verify(truncated));
    // Flip one character in the middle (inside the signed payload).
    let mut bytes = token.clone().into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(bytes).unwrap();
    assert!(matches!(v.verify(&altered), Err(Error::Malformed(_) | Error::Forged)));
    assert!(matches!(v.verify("ghp_notatasktoken"), Err(Error::Malformed(_))));
    assert!(matches!(v.verify(""), Err(Error::Malformed(_))));
    assert!(matches!(v.verify(&"alk_A".repeat(5000)), Err(Error::Malformed(_))));
}

#[tokio::test]
async fn expired_token_is_refused_even_from_cache() {
    let e = env().await;
    let (task, token) = e.broker.start_task(&req(&["github:read"], 60)).await.unwrap();
    let v = verifier(&e);
    v.verify(&token).unwrap(); // fills the cache
    let err = v.verify_at(&token, task.expires_at + 1).unwrap_err();
    assert!(matches!(err, Error::Expired(_)), "{err}");
    assert_eq!(err.code(), "token_expired");
    assert!(matches!(v.verify_uncached(&token, task.expires_at + 1), Err(Error::Expired(_))));
}

#[tokio::test]
async fn revocation_applies_to_cached_tokens_and_children() {
    let e = env().await;
    let (task, token) = e.broker.start_task(&req(&["github:write"], 600)).await.unwrap();
    let (child, _) = attenuate(&token, &e.public, Some(&["github:read".parse().unwrap()]), None, now()).unwrap();
    let revs = Revocations::new();
    let v = Verifier::new(e.public, revs.clone(), VerifierOptions::default());
    v.verify(&token).unwrap();
    v.verify(&child).unwrap();
    assert!(e.broker.end_task(&task.id, "test", "task ended").await.unwrap());
    assert!(!e.broker.end_task(&task.id, "test", "again").await.unwrap(), "second end reports already ended");
    assert_eq!(revs.refresh(&*e.store).await.unwrap(), 1);
    let err = v.verify(&token).unwrap_err();
    assert!(matches!(err, Error::Revoked(..)), "{err}");
    assert_eq!(err.code(), "token_revoked");
    assert!(matches!(v.verify(&child), Err(Error::Revoked(..))));
    assert!(matches!(e.broker.end_task("no-such-task", "t", "r").await, Err(Error::UnknownTask(_))));
}

#[tokio::test]
async fn stale_revocation_list_fails_closed() {
    let e = env().await;
    let (_, token) = e.broker.start_task(&req(&["github:read"], 600)).await.unwrap();
    let revs = Revocations::with_max_staleness(Duration::from_millis(50));
    let v = Verifier::new(e.public, revs.clone(), VerifierOptions::default());
    assert!(matches!(v.verify(&token), Err(Error::Invalid(_))), "never refreshed: refuse");
    revs.refresh(&*e.store).await.unwrap();
    v.verify(&token).unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(matches!(v.verify(&token), Err(Error::Invalid(_))), "stale: refuse");
}

#[tokio::test]
async fn attenuation_narrows_and_never_widens() {
    let e = env().await;
    let (_, token) = e.broker.start_task(&req(&["github:write", "railway-staging:destroy"], 600)).await.unwrap();
    let n = now();
    let (child, claims) = attenuate(&token, &e.public, Some(&["github:read".parse().unwrap()]), Some(Duration::from_secs(60)), n).unwrap();
    assert_eq!(claims.grants.iter().map(ToString::to_string).collect::<Vec<_>>(), ["github:read"]);
    assert!(claims.expires_at <= n + 60);
    assert_eq!(claims.attenuations, 1);
    let v = verifier(&e);
    assert_eq!(v.verify(&child).unwrap().grants.len(), 1);
    assert!(matches!(v.verify_at(&child, n + 61), Err(Error::Expired(_))), "the child's shorter lifetime is enforced");

    // Widening a grant, from the parent or from the narrowed child, is refused.
    assert!(matches!(attenuate(&token, &e.public, Some(&["gitlab:read".parse().unwrap()]), None, n), Err(Error::Widened(_))));
    assert!(matches!(attenuate(&child, &e.public, Some(&["github:write".parse().unwrap()]), None, n), Err(Error::Widened(_))));
    // A named operation is covered by destroy on the same upstream.
    attenuate(&token, &e.public, Some(&["railway-staging:volumeDelete".parse().unwrap()]), None, n).unwrap();
    // Outliving the parent is refused.
    assert!(matches!(attenuate(&child, &e.public, None, Some(Duration::from_secs(3600)), n), Err(Error::Widened(_))));
    assert!(matches!(attenuate(&token, &e.public, Some(&[]), None, n), Err(Error::NoGrants)));
}

/// A hand-made block (not from `attenuate`) that claims wider grants or a later
/// expiry must not widen anything: the verifier refuses the whole token.
#[tokio::test]
async fn hand_made_widening_blocks_are_refused() {
    let e = env().await;
    let (_, token) = e.broker.start_task(&req(&["github:read"], 600)).await.unwrap();
    let (child, _) = attenuate(&token, &e.public, Some(&["github:read".parse().unwrap()]), None, now()).unwrap();
    let b64 = child.strip_prefix("alk_").unwrap();
    let biscuit = biscuit_auth::Biscuit::from_base64(b64, e.public).unwrap();

    let widen = |ctx: &str, code: &str| {
        let mut block = BlockBuilder::new().context(ctx.to_owned());
        if !code.is_empty() {
            block = block.code(code).unwrap();
        }
        format!("alk_{}", biscuit.append(block).unwrap().to_base64().unwrap())
    };
    let v = verifier(&e);
    let far = now() + 100_000;
    let t = widen(&format!(r#"{{"v":1,"grants":["github:destroy"],"exp":{far}}}"#), "");
    assert!(matches!(v.verify(&t), Err(Error::Widened(_))), "{:?}", v.verify(&t));
    let t = widen(&format!(r#"{{"v":1,"exp":{far}}}"#), "");
    assert!(matches!(v.verify(&t), Err(Error::Widened(_))));
    // Datalog facts in a non-authority block are not trusted as grants.
    let t = widen("", r#"grant("github:destroy"); grant("prod-db:destroy");"#);
    let got = v.verify(&t).unwrap();
    assert_eq!(got.grants.iter().map(ToString::to_string).collect::<Vec<_>>(), ["github:read"]);
    let t = widen("not json", "");
    assert!(matches!(v.verify(&t), Err(Error::Invalid(_))));
}

#[tokio::test]
async fn task_requests_are_validated() {
    let e = env().await;
    let err = e.broker.start_task(&req(&["github:read"], 9 * 3600)).await.unwrap_err();
    assert!(matches!(err, Error::TtlTooLong { .. }));
    assert!(err.to_string().contains("9h") && err.to_string().contains("8h"), "{err}");
    assert!(matches!(e.broker.start_task(&req(&["github:read"], 0)).await, Err(Error::TtlInvalid(_))));
    assert!(matches!(e.broker.start_task(&req(&[], 60)).await, Err(Error::NoGrants)));
    let mut r = req(&["github:read"], 60);
    r.purpose = Some("line\nbreak".into());
    assert!(e.broker.start_task(&r).await.is_err());
    assert!(e.store.list_tasks().await.unwrap().is_empty(), "nothing recorded for refused requests");
}

#[tokio::test]
async fn inspect_shows_claims_of_expired_tokens() {
    let e = env().await;
    let (task, token) = e.broker.start_task(&req(&["github:read"], 60)).await.unwrap();
    let claims = inspect(&token, &e.public, task.expires_at + 3600).unwrap();
    assert_eq!(claims.task_id, task.id);
    let other = TokenAuthority::ephemeral();
    assert!(matches!(inspect(&token, &other.public_key(), now()), Err(Error::Forged)));
}

#[tokio::test]
async fn key_files_round_trip_through_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let state = airlock_state::StateDir::at(dir.path().join("s")).unwrap();
    state.create().unwrap();
    let a = TokenAuthority::init(&state).unwrap();
    assert!(matches!(TokenAuthority::init(&state), Err(Error::State(airlock_state::Error::AlreadyInitialized(_)))));
    let b = TokenAuthority::load(&state).unwrap();
    assert_eq!(a.public_key(), b.public_key());
    assert_eq!(airlock_token::load_public_key(&state).unwrap(), a.public_key());
}
