//! Task tokens.
//!
//! This crate owns airlock's task tokens: Biscuit tokens signed by the broker's
//! Ed25519 root key that bind one agent, one task, one environment, a set of
//! grants and an expiry. It mints them ([`TokenAuthority`]), narrows them
//! offline for sub-agents ([`attenuate`]), verifies them exactly as the gateway
//! does ([`Verifier`]: signature, expiry, revocation, narrowing; cached by token
//! hash) and runs the task lifecycle that records and revokes them ([`Broker`]).
//!
//! A token is worth nothing outside the gateway: it holds no secret, only
//! claims. This crate must never log a token (only its hash prefix), never mint
//! a token without expiry, and never widen what a token grants.

mod attenuate;
mod broker;
mod keys;
mod revocations;
mod verify;

use airlock_types::{Environment, Grant, Name};
use serde::Serialize;

pub use attenuate::{attenuate, inspect};
/// Build an audit event stamped now (used by callers that audit token operations).
pub use broker::audit_event;
pub use broker::{Broker, StartTask, end_task};
pub use keys::{Claims, TokenAuthority, load_public_key};
pub use revocations::Revocations;
pub use verify::{Verifier, VerifierOptions};

/// Every airlock task token starts with this, so scanners and the gateway can
/// tell it from a real credential.
pub const TOKEN_PREFIX: &str = "alk_";

/// The longest lifetime a task may ask for unless configured otherwise.
pub const DEFAULT_MAX_TTL: std::time::Duration = std::time::Duration::from_secs(8 * 3600);

/// Why a token could not be minted, narrowed or verified.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not an airlock task token (wrong prefix, bad encoding, truncated).
    #[error("not a valid airlock task token: {0}")]
    Malformed(String),
    /// The signature does not verify under this broker's public key (forged, altered, or from another airlock).
    #[error("token signature does not verify: it was forged, altered, or issued by a different airlock installation")]
    Forged,
    /// The token has expired.
    #[error("token expired at {0}; start a new task with `airlock task start`")]
    Expired(String),
    /// The token's task was ended or revoked.
    #[error("token revoked: task {0} was ended ({1})")]
    Revoked(String, String),
    /// An attenuation block claims more than its parent (wider grants or a later expiry).
    #[error(
        "token widened: an attenuation block claims {0}, which its parent token does not grant; narrowed tokens can only remove grants and shorten lifetime"
    )]
    Widened(String),
    /// A Datalog check in the token failed, or its claims are incomplete.
    #[error("token rejected: {0}")]
    Invalid(String),
    /// A requested lifetime is above the configured cap.
    #[error("requested lifetime {requested} is above the maximum of {max}; ask for a shorter --ttl (the cap is `[broker] max_ttl` in airlock.toml)")]
    TtlTooLong {
        /// What was asked for, human-readable.
        requested: String,
        /// The cap, human-readable.
        max: String,
    },
    /// A requested lifetime is zero or otherwise unusable.
    #[error("invalid lifetime: {0}")]
    TtlInvalid(String),
    /// A task was started with no grants.
    #[error("a task needs at least one --grant UPSTREAM:CAPABILITY (e.g. --grant github:read)")]
    NoGrants,
    /// The task does not exist.
    #[error("no task with id {0}; see `airlock task list`")]
    UnknownTask(String),
    /// The signing key file is unusable.
    #[error("token key: {0}")]
    Key(String),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] airlock_state::Error),
    /// The store failed (for revocations: fail closed).
    #[error(transparent)]
    Store(#[from] airlock_store::Error),
}

impl Error {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Malformed(_) => "token_malformed",
            Error::Forged => "token_invalid",
            Error::Expired(_) => "token_expired",
            Error::Revoked(..) => "token_revoked",
            Error::Widened(_) => "token_widened",
            Error::Invalid(_) => "token_invalid",
            Error::TtlTooLong { .. } | Error::TtlInvalid(_) | Error::NoGrants => "bad_request",
            Error::UnknownTask(_) => "unknown_task",
            Error::Key(_) | Error::State(_) => "token_key_unavailable",
            Error::Store(_) => "store_unavailable",
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a verified token says: whose task, where, allowed to do what, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedTask {
    /// The task id.
    pub task_id: String,
    /// The agent the task belongs to.
    pub agent: Name,
    /// The environment the token is bound to.
    pub environment: Environment,
    /// Effective grants after every attenuation.
    pub grants: Vec<Grant>,
    /// Why the task exists.
    pub purpose: Option<String>,
    /// Effective expiry, unix seconds (the earliest of every block's).
    pub expires_at: i64,
    /// Number of attenuation blocks (0 for a token straight from the broker).
    pub attenuations: usize,
    /// First 16 hex chars of sha256(token): safe to log, identifies the token.
    pub token_hash: String,
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

pub(crate) fn token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Render a duration the way a person would write it (`8h`, `30m`, `90s`).
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s >= 3600 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// The claims carried in a block's signed context (JSON). The authority block's
/// claims are also Datalog facts; attenuation blocks narrow them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct BlockClaims {
    pub v: u32,
    /// Grants this block narrows to (`None`: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<Grant>>,
    /// Expiry this block narrows to, unix seconds.
    pub exp: i64,
}
