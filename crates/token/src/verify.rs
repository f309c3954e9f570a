//! Token verification, exactly as the gateway does it.
//!
//! Owns the decision "is this token good right now, and what does it grant":
//! signature under the broker's public key, Datalog checks (expiry) under
//! explicit run limits, the narrowing rule for attenuation blocks, expiry, and
//! revocation. Successful results are cached by token hash; a cache hit still
//! re-checks expiry and revocation. It must never log a token.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use airlock_types::{Environment, Grant, Name};
use biscuit_auth::builder::{date, fact};
use biscuit_auth::datalog::RunLimits;
use biscuit_auth::{AuthorizerBuilder, Biscuit, PublicKey};
use lru::LruCache;

use crate::{BlockClaims, Error, Result, Revocations, TOKEN_PREFIX, VerifiedTask, now_unix, rfc3339, token_hash};

/// Longest token accepted; anything longer is refused before parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Tuning for a [`Verifier`].
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    /// Verified tokens kept in the cache.
    pub cache_capacity: usize,
    /// Datalog limits. Set explicitly: Biscuit's default 1 ms wall-clock limit
    /// fails under load.
    pub run_limits: RunLimits,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self { cache_capacity: 10_000, run_limits: RunLimits { max_facts: 1_000, max_iterations: 100, max_time: Duration::from_millis(50) } }
    }
}

/// Verifies task tokens. Share one per process (`Arc<Verifier>`).
pub struct Verifier {
    public: PublicKey,
    revocations: Arc<Revocations>,
    cache: Mutex<LruCache<[u8; 32], Arc<VerifiedTask>>>,
    limits: RunLimits,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for tokens signed by `public`, consulting `revocations`.
    pub fn new(public: PublicKey, revocations: Arc<Revocations>, opts: VerifierOptions) -> Self {
        let cap = NonZeroUsize::new(opts.cache_capacity.max(1)).expect("max(1) is non-zero");
        Self { public, revocations, cache: Mutex::new(LruCache::new(cap)), limits: opts.run_limits }
    }

    /// Verify `token` now.
    pub fn verify(&self, token: &str) -> Result<Arc<VerifiedTask>> {
        self.verify_at(token, now_unix())
    }

    /// Verify `token` as of unix time `now`.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Arc<VerifiedTask>> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::Malformed(format!("token is {} bytes, longer than the {MAX_TOKEN_LEN}-byte limit", token.len())));
        }
        let key = token_hash(token);
        let hit = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let task = match hit {
            Some(t) => t,
            None => {
                let t = Arc::new(decode(token, &self.public, now, &self.limits)?);
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).put(key, Arc::clone(&t));
                t
            }
        };
        if now > task.expires_at {
            return Err(Error::Expired(rfc3339(task.expires_at)));
        }
        self.revocations.check(&task.task_id)?;
        Ok(task)
    }

    /// Verify without consulting or filling the cache (benchmarks, `airlock token verify`).
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedTask> {
        let t = decode(token, &self.public, now, &self.limits)?;
        if now > t.expires_at {
            return Err(Error::Expired(rfc3339(t.expires_at)));
        }
        self.revocations.check(&t.task_id)?;
        Ok(t)
    }
}

pub(crate) fn parse_biscuit(token: &str, public: &PublicKey) -> Result<Biscuit> {
    let b64 = token.trim().strip_prefix(TOKEN_PREFIX).ok_or_else(|| Error::Malformed(format!("airlock task tokens start with {TOKEN_PREFIX:?}")))?;
    Biscuit::from_base64(b64, *public).map_err(|e| {
        use biscuit_auth::error::{Format, Token};
        match e {
            Token::Format(Format::Signature(_) | Format::SealedSignature | Format::UnknownPublicKey | Format::InvalidKey(_)) => Error::Forged,
            Token::Base64(_) => Error::Malformed("bad base64 (truncated or altered?)".into()),
            other => Error::Malformed(format!("cannot decode: {other}")),
        }
    })
}

fn one(mut v: Vec<(String,)>, what: &str) -> Result<String> {
    match v.len() {
        1 => Ok(v.pop().expect("len 1").0),
        0 => Err(Error::Invalid(format!("token has no {what} claim"))),
        _ => Err(Error::Invalid(format!("token has several {what} claims"))),
    }
}

/// Decode and check a token as of `now`, ignoring revocation and the cache.
/// Expiry is reported by the caller (so `inspect` can show expired tokens).
pub(crate) fn decode_claims(token: &str, public: &PublicKey, now: i64, limits: &RunLimits, enforce_time: bool) -> Result<VerifiedTask> {
    let biscuit = parse_biscuit(token, public)?;
    let contexts = biscuit.context();
    let authority: BlockClaims = contexts
        .first()
        .and_then(|c| c.as_deref())
        .and_then(|c| serde_json::from_str(c).ok())
        .ok_or_else(|| Error::Invalid("token has no airlock claims in its authority block".into()))?;

    // Narrowing: every attenuation block may only keep what its parent had.
    let mut grants: Vec<Grant> = Vec::new();
    let mut expires_at = authority.exp;
    let mut narrowed: Vec<(Option<Vec<Grant>>, i64)> = Vec::new();
    for ctx in contexts.iter().skip(1) {
        match ctx.as_deref() {
            None | Some("") => {}
            Some(c) => {
                let claims: BlockClaims = serde_json::from_str(c).map_err(|e| Error::Invalid(format!("attenuation block has malformed claims: {e}")))?;
                narrowed.push((claims.grants, claims.exp));
            }
        }
    }

    let check_time = if enforce_time { now } else { now.min(expires_at) };
    let t = UNIX_EPOCH + Duration::from_secs(check_time.max(0) as u64);
    let mut authorizer = AuthorizerBuilder::new()
        .fact(fact("time", &[date(&t)]))
        .and_then(|b| b.policy("allow if airlock_task($id)"))
        .map(|b| b.set_limits(limits.clone()))
        .and_then(|b| b.build(&biscuit))
        .map_err(|e| Error::Invalid(format!("cannot evaluate token: {e}")))?;
    if let Err(e) = authorizer.authorize() {
        let earliest = narrowed.iter().map(|n| n.1).chain([expires_at]).min().unwrap_or(expires_at);
        if enforce_time && now > earliest {
            return Err(Error::Expired(rfc3339(earliest)));
        }
        return Err(Error::Invalid(format!("{e}")));
    }
    let q = |a: &mut biscuit_auth::Authorizer, rule: &str| -> Result<Vec<(String,)>> {
        a.query(rule).map_err(|e| Error::Invalid(format!("cannot read token claims: {e}")))
    };
    let task_id = one(q(&mut authorizer, "x($v) <- airlock_task($v)")?, "task")?;
    let agent = one(q(&mut authorizer, "x($v) <- agent($v)")?, "agent")?;
    let environment = one(q(&mut authorizer, "x($v) <- environment($v)")?, "environment")?;
    let purposes = q(&mut authorizer, "x($v) <- purpose($v)")?;
    for (g,) in q(&mut authorizer, "x($v) <- grant($v)")? {
        grants.push(g.parse().map_err(|e| Error::Invalid(format!("token carries a bad grant: {e}")))?);
    }
    grants.sort();
    // The authority block's signed context must agree with its Datalog facts.
    let mut ctx_grants = authority.grants.clone().unwrap_or_default();
    ctx_grants.sort();
    if ctx_grants != grants {
        return Err(Error::Invalid("token claims are inconsistent".into()));
    }
    for (block_grants, exp) in narrowed {
        if exp > expires_at {
            return Err(Error::Widened(format!("an expiry ({}) later than its parent's ({})", rfc3339(exp), rfc3339(expires_at))));
        }
        expires_at = exp;
        if let Some(bg) = block_grants {
            for g in &bg {
                if !grants.iter().any(|p| g.is_covered_by(p)) {
                    return Err(Error::Widened(format!("grant {g}")));
                }
            }
            grants = bg;
        }
    }
    let _ = SystemTime::now; // time comes from the caller, never from the token
    Ok(VerifiedTask {
        task_id,
        agent: Name::parse("agent", &agent).map_err(|e| Error::Invalid(e.to_string()))?,
        environment: environment.parse::<Environment>().map_err(|e| Error::Invalid(e.to_string()))?,
        grants,
        purpose: purposes.into_iter().next().map(|p| p.0),
        expires_at,
        attenuations: biscuit.block_count().saturating_sub(1),
        token_hash: hex::encode(&token_hash(token)[..8]),
    })
}

fn decode(token: &str, public: &PublicKey, now: i64, limits: &RunLimits) -> Result<VerifiedTask> {
    decode_claims(token, public, now, limits, true)
}
