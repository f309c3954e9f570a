//! Persistence for airlock behind one trait.
//!
//! This crate owns the database: the [`Store`] trait every other crate persists
//! through, its embedded SQLite implementation ([`SqliteStore`], WAL mode,
//! versioned migrations) and the hash chain that makes the audit log
//! tamper-evident ([`chain`]). A PostgreSQL implementation for several gateway
//! replicas slots in behind the same trait without touching callers.
//!
//! It must never see a plaintext secret: vault rows arrive here already sealed,
//! and it never interprets grants, policies or tokens — it stores what it is given.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod chain;
mod common;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created.
    #[error("cannot open the airlock database at {path}: {source}")]
    Open {
        /// Path of the database file.
        path: String,
        /// What the database driver said.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("cannot bring the airlock database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A secret with this name already exists in this environment.
    #[error("a secret named {name:?} already exists in environment {environment:?}; use `airlock secret rotate` to change its value")]
    DuplicateSecret {
        /// The secret name.
        name: String,
        /// The environment it lives in.
        environment: String,
    },
    /// A task with this id already exists.
    #[error("a task with id {0} already exists")]
    DuplicateTask(String),
    /// The record to update or delete does not exist (or was changed concurrently).
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What kind of record (secret, task).
        kind: &'static str,
        /// The identifier looked up.
        id: String,
    },
    /// A stored row could not be decoded (for example invalid JSON in a column).
    #[error("the database holds a malformed {what}: {detail}")]
    Corrupt {
        /// What kind of row.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Any other database error (unreachable, locked, disk full…).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result alias for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One sealed vault record. The store treats the key material as opaque bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Random identifier (UUID), bound into the ciphertext's associated data.
    pub id: String,
    /// Secret name, unique per environment.
    pub name: String,
    /// Environment the secret belongs to.
    pub environment: String,
    /// `primary` or `backup`.
    pub tier: String,
    /// The upstream this secret may be sent to.
    pub upstream: String,
    /// Free-text description for operators.
    pub description: Option<String>,
    /// Incremented on every rotation.
    pub version: i64,
    /// Fingerprint of the master key that wrapped the data key.
    pub key_id: String,
    /// The data key, sealed by the master key (nonce-prefixed).
    pub wrapped_key: Vec<u8>,
    /// Nonce used to seal the value.
    pub nonce: Vec<u8>,
    /// The value, sealed by the data key.
    pub ciphertext: Vec<u8>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Last rotation time, unix seconds.
    pub updated_at: i64,
}

impl fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sealed material is not secret, but it is noise: keep it out of logs.
        f.debug_struct("SecretRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("environment", &self.environment)
            .field("tier", &self.tier)
            .field("upstream", &self.upstream)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A task: one agent doing one job in one environment for a bounded time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task identifier (UUID v7, time-ordered).
    pub id: String,
    /// The agent the task belongs to.
    pub agent: String,
    /// The environment the task is bound to.
    pub environment: String,
    /// Grants as `upstream:capability` strings.
    pub grants: Vec<String>,
    /// Why the task exists, as given by whoever started it.
    pub purpose: Option<String>,
    /// Start time, unix seconds.
    pub created_at: i64,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// When the task was ended (and its tokens revoked), if it was.
    pub ended_at: Option<i64>,
    /// Who started the task (e.g. `cli:alice`).
    pub created_by: String,
}

/// One entry of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Monotonic sequence number; replicas remember the last one they saw.
    pub seq: i64,
    /// The revoked task: every token minted for it or attenuated from it is dead.
    pub task_id: String,
    /// When, unix seconds.
    pub revoked_at: i64,
    /// Why (e.g. `task ended`, `agent exited`).
    pub reason: String,
}

/// An audit record as submitted by a caller. Never put a secret value in here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique id (UUID v7). For gateway requests this is the request id shown to the agent.
    pub id: String,
    /// Time, unix milliseconds.
    pub ts_ms: i64,
    /// Who acted: `cli:<user>`, `agent:<name>`, `admin:<name>`, `gateway`.
    pub actor: String,
    /// What was done, dotted: `secret.add`, `task.start`, `gateway.request`…
    pub action: String,
    /// What it was done to: a secret name, task id, `upstream/operation`…
    pub subject: String,
    /// `ok`, `denied`, `error`, `allowed`, `needs_approval`…
    pub outcome: String,
    /// The task in whose name it happened, if any.
    pub task_id: Option<String>,
    /// Structured details (environment, policies, status, bytes, reason…).
    pub detail: serde_json::Value,
}

/// An audit record as stored: the event plus its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, starting at 1.
    pub seq: i64,
    /// The recorded event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous entry (64 zeros for the first).
    pub prev_hash: String,
    /// sha256 over `prev_hash` and the canonical form of this entry.
    pub hash: String,
}

/// Which audit entries to return.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only entries of this task.
    pub task_id: Option<String>,
    /// Only entries whose action starts with this prefix.
    pub action_prefix: Option<String>,
    /// Only entries with seq greater than this.
    pub after_seq: Option<i64>,
    /// At most this many (newest last). `None` = no limit.
    pub limit: Option<u32>,
}

/// The state of an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    /// Waiting for an admin.
    Pending,
    /// Approved; the same request may pass once before `expires_at`.
    Approved,
    /// Denied by an admin.
    Denied,
    /// Approved and already used by one request.
    Used,
}

impl ApprovalStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Used => "used",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "denied" => ApprovalStatus::Denied,
            "used" => ApprovalStatus::Used,
            other => return Err(Error::Corrupt { what: "approval status", detail: other.to_owned() }),
        })
    }
}

/// A request for a human decision on one exact request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Approval id (shown to the agent and the approver).
    pub id: String,
    /// When it was requested, unix seconds.
    pub created_at: i64,
    /// The task that asked.
    pub task_id: String,
    /// The agent of that task.
    pub agent: String,
    /// The upstream the request is for.
    pub upstream: String,
    /// The operation (e.g. `volumeDelete`).
    pub operation: String,
    /// The resource it touches, when attributed.
    pub resource: Option<String>,
    /// The environment of that resource.
    pub environment: String,
    /// sha256 of the exact request (method, target, body), hex.
    pub request_hash: String,
    /// Why policy asked for a human.
    pub reason: String,
    /// Current state.
    pub status: ApprovalStatus,
    /// Who decided (`admin:<name>`).
    pub decided_by: Option<String>,
    /// When, unix seconds.
    pub decided_at: Option<i64>,
    /// The approver's note (e.g. deny reason).
    pub decision_note: Option<String>,
    /// Pending requests expire, and so does an unused approval, at this time.
    pub expires_at: i64,
    /// When the approved request passed.
    pub used_at: Option<i64>,
}

/// What a health check found.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Backend name (`sqlite`, `postgres`).
    pub backend: &'static str,
    /// Highest applied migration version.
    pub schema_version: i64,
    /// Journal mode (SQLite) or server version (PostgreSQL).
    pub detail: String,
}

/// The persistence interface every airlock component goes through.
///
/// Implementations must be safe to share between tasks and, for PostgreSQL,
/// between processes: every method is a single transaction.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Check the database answers and report its schema version.
    async fn health(&self) -> Result<Health>;
    /// Background maintenance a long-running writer calls now and then, off the request
    /// path: SQLite copies its write-ahead log into the database (the audit connection
    /// never does that inside a commit); PostgreSQL does nothing.
    async fn checkpoint(&self) -> Result<()> {
        Ok(())
    }

    /// Read a metadata value.
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    /// Insert a metadata value if the key is absent; returns whether it was inserted.
    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<bool>;

    /// Insert a new vault record; [`Error::DuplicateSecret`] if (name, environment) exists.
    async fn insert_secret(&self, rec: &SecretRecord) -> Result<()>;
    /// All records with this name, one per environment.
    async fn find_secrets(&self, name: &str) -> Result<Vec<SecretRecord>>;
    /// The record with this name in this environment.
    async fn get_secret(&self, name: &str, environment: &str) -> Result<Option<SecretRecord>>;
    /// Every vault record, ordered by name then environment.
    async fn list_secrets(&self) -> Result<Vec<SecretRecord>>;
    /// Replace the sealed material of record `rec.id` if its version is still `expected_version`.
    async fn replace_secret(&self, rec: &SecretRecord, expected_version: i64) -> Result<()>;
    /// Delete the record with this id; [`Error::NotFound`] if absent.
    async fn delete_secret(&self, id: &str) -> Result<()>;

    /// Insert a new task.
    async fn insert_task(&self, task: &TaskRecord) -> Result<()>;
    /// The task with this id.
    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>>;
    /// Every task, newest first.
    async fn list_tasks(&self) -> Result<Vec<TaskRecord>>;
    /// End a task and revoke it, in one transaction. Returns false if it had already ended.
    async fn end_task(&self, id: &str, at: i64, reason: &str) -> Result<bool>;
    /// Revocations with seq greater than `after`, in order.
    async fn revocations_since(&self, after: i64) -> Result<Vec<Revocation>>;

    /// Record a new pending approval request.
    async fn create_approval(&self, rec: &ApprovalRecord) -> Result<()>;
    /// The approval with this id.
    async fn get_approval(&self, id: &str) -> Result<Option<ApprovalRecord>>;
    /// Approvals, newest first, optionally only those with `status`.
    async fn list_approvals(&self, status: Option<ApprovalStatus>) -> Result<Vec<ApprovalRecord>>;
    /// The newest pending or approved, unexpired approval for this exact request of this task.
    async fn find_approval(&self, task_id: &str, request_hash: &str, now: i64) -> Result<Option<ApprovalRecord>>;
    /// Approve or deny a pending approval. [`Error::NotFound`] if it is not pending (or does not exist).
    /// An approval extends the deadline to `valid_until` for the single use.
    async fn decide_approval(&self, id: &str, approve: bool, by: &str, note: Option<&str>, at: i64, valid_until: i64) -> Result<ApprovalRecord>;
    /// Atomically mark an approved, unexpired approval of this exact request as used.
    /// Returns it if this call consumed it; `None` if there was nothing to consume
    /// (so a replay of an approved request passes exactly once).
    async fn consume_approval(&self, task_id: &str, request_hash: &str, now: i64) -> Result<Option<ApprovalRecord>>;

    /// Append one audit event to the chain and return the stored entry.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry> {
        let mut v = self.append_audit_batch(std::slice::from_ref(event)).await?;
        v.pop().ok_or(Error::Corrupt { what: "audit batch", detail: "empty result".into() })
    }
    /// Append events to the chain in one durable transaction (group commit).
    async fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>>;
    /// [`Store::append_audit_batch`] without handing the stored entries back (no copy of
    /// each event): the group-commit writer only needs to know the batch is durable.
    /// Returns the sequence number of the last appended entry (0 for an empty batch).
    async fn append_audit_events(&self, events: &[AuditEvent]) -> Result<i64> {
        Ok(self.append_audit_batch(events).await?.last().map_or(0, |e| e.seq))
    }
    /// Read audit entries, oldest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
}
