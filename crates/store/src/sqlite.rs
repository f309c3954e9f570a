//! The embedded SQLite store (default backend).
//!
//! Owns the SQLite connection pools, their pragmas (WAL, `synchronous=FULL` so a
//! committed audit record survives a crash, busy timeout) and the SQLite
//! migrations. Audit appends take the write lock up front (`BEGIN IMMEDIATE`)
//! so the read-head/insert pair is atomic across processes.
//!
//! Audit appends have a connection of their own (`audit_pool`, one connection): its page
//! cache stays valid from one group commit to the next (a batch on a pooled connection
//! that another connection wrote behind re-read its pages), and it never checkpoints the
//! WAL inside a commit (`wal_autocheckpoint=0`), so no request waits for a checkpoint;
//! [`crate::Store::checkpoint`] does that work on the general pool, off the request path.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::{Error, Health, Result};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/sqlite/0001_init.sql")),
    (2, "approvals", include_str!("../migrations/sqlite/0002_approvals.sql")),
    (3, "audit indexes", include_str!("../migrations/sqlite/0003_audit_indexes.sql")),
];

pub(crate) fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let migrations =
        migrations.iter().map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false)).collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// SQLite-backed [`crate::Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection for audit appends (see the module docs).
    audit_pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and apply migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| Error::Open { path: path.display().to_string(), source: e })?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.clone())
            .await
            .map_err(|e| Error::Open { path: path.display().to_string(), source: e })?;
        restrict_permissions(path);
        migrator(MIGRATIONS).run(&pool).await?;
        let audit_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.pragma("wal_autocheckpoint", "0"))
            .await
            .map_err(|e| Error::Open { path: path.display().to_string(), source: e })?;
        Ok(Self { pool, audit_pool })
    }

    /// Open an existing database without creating it.
    pub async fn open_existing(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Open { path: path.display().to_string(), source: sqlx::Error::Configuration("the database file does not exist".into()) });
        }
        Self::open(path).await
    }

    /// The listing; with a task filter the second form, whose `task_id = $1` the `audit_task`
    /// index answers (an `IS NULL OR` guard would make the planner scan the whole log).
    const LIST_AUDIT_SQL: &'static str = "SELECT * FROM (
            SELECT * FROM audit
            WHERE ($1 IS NULL OR action LIKE $1 ESCAPE '\\')
              AND seq > $2
            ORDER BY seq DESC LIMIT $3
         ) ORDER BY seq ASC";

    const LIST_AUDIT_TASK_SQL: &'static str = "SELECT * FROM (
            SELECT * FROM audit
            WHERE task_id = $1
              AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\')
              AND seq > $3
            ORDER BY seq DESC LIMIT $4
         ) ORDER BY seq ASC";

    /// Positional `?` in generated multi-row statements: binding `$n` makes sqlx look up
    /// every parameter's name, and SQLite's name lookup is linear, so a 2,816-parameter
    /// audit `INSERT` would spend most of its time there.
    const NUMBERED_PLACEHOLDERS: bool = false;

    async fn begin_audit(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.audit_pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A `PASSIVE` checkpoint on the general pool: copies what it can from the WAL into the
    /// database without blocking the audit writer (WAL lets one writer and a checkpointer
    /// run at once). The audit connection never checkpoints by itself.
    async fn backend_checkpoint(&self) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        Ok(())
    }

    /// A read-then-write transaction. `BEGIN IMMEDIATE` takes the write lock up front (and
    /// waits for it under the busy timeout); a deferred transaction that reads first fails at
    /// once with `database is locked` when another connection committed in between.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn after_revocation(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<()> {
        Ok(())
    }

    async fn backend_health(&self) -> Result<Health> {
        let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&self.pool).await?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&self.pool).await?;
        Ok(Health { backend: "sqlite", schema_version: version, detail: format!("journal_mode={mode}, quick_check={check}") })
    }
}

/// Database files hold sealed secrets and the audit log: owner-only.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

crate::common::impl_store!(SqliteStore, SqliteRow);
