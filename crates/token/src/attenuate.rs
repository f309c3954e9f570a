//! Offline attenuation and inspection.
//!
//! Owns narrowing a token for a sub-agent without the broker: the new block may
//! only keep grants covered by the parent's and only shorten the lifetime; an
//! attempt to widen is refused here and, should a hand-made block try anyway,
//! by the verifier. It must never need or touch the private key.

use std::time::{Duration, UNIX_EPOCH};

use airlock_types::Grant;
use biscuit_auth::PublicKey;
use biscuit_auth::builder::BlockBuilder;

use crate::keys::rfc3339_date;
use crate::verify::{VerifierOptions, decode_claims, parse_biscuit};
use crate::{BlockClaims, Error, Result, TOKEN_PREFIX, VerifiedTask, human_duration, rfc3339};

/// Narrow `token` to `grants` (if given) and a lifetime of `ttl` from `now` (if given).
///
/// Returns the new token and what it grants. Fails with [`Error::Widened`] if a
/// grant is not covered by the parent, or if `ttl` would outlive the parent.
pub fn attenuate(token: &str, public: &PublicKey, grants: Option<&[Grant]>, ttl: Option<Duration>, now: i64) -> Result<(String, VerifiedTask)> {
    let limits = VerifierOptions::default().run_limits;
    let parent = decode_claims(token, public, now, &limits, true)?;
    if now > parent.expires_at {
        return Err(Error::Expired(rfc3339(parent.expires_at)));
    }
    if let Some(gs) = grants {
        if gs.is_empty() {
            return Err(Error::NoGrants);
        }
        for g in gs {
            if !parent.grants.iter().any(|p| g.is_covered_by(p)) {
                let have = parent.grants.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                return Err(Error::Widened(format!("grant {g} (the parent token grants only: {have})")));
            }
        }
    }
    let exp = match ttl {
        Some(d) if d.is_zero() => return Err(Error::TtlInvalid("--ttl must be greater than zero".into())),
        Some(d) => {
            let e = now.saturating_add(d.as_secs() as i64);
            if e > parent.expires_at {
                return Err(Error::Widened(format!(
                    "a lifetime of {} (the parent token expires at {}, in {})",
                    human_duration(d),
                    rfc3339(parent.expires_at),
                    human_duration(Duration::from_secs((parent.expires_at - now).max(0) as u64))
                )));
            }
            e
        }
        None => parent.expires_at,
    };
    let mut new_grants = grants.map(<[Grant]>::to_vec);
    if let Some(g) = new_grants.as_mut() {
        g.sort();
        g.dedup();
    }
    let claims = BlockClaims { v: 1, grants: new_grants, exp };
    let t = UNIX_EPOCH + Duration::from_secs(exp as u64);
    let block = BlockBuilder::new()
        .check(format!("check if time($t), $t <= {}", rfc3339_date(&t)).as_str())
        .map_err(|e| Error::Invalid(format!("cannot build block: {e}")))?
        .context(serde_json::to_string(&claims).expect("serialisable"));
    let biscuit = parse_biscuit(token, public)?;
    let child = biscuit.append(block).map_err(|e| Error::Invalid(format!("cannot append block: {e}")))?;
    let text = format!("{TOKEN_PREFIX}{}", child.to_base64().map_err(|e| Error::Invalid(e.to_string()))?);
    let verified = decode_claims(&text, public, now, &limits, true)?;
    Ok((text, verified))
}

/// What a token claims, with its signature checked but expiry and revocation
/// not enforced (so an expired token can still be inspected).
pub fn inspect(token: &str, public: &PublicKey, now: i64) -> Result<VerifiedTask> {
    decode_claims(token, public, now, &VerifierOptions::default().run_limits, false)
}
