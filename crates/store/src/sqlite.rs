//! The embedded SQLite store (default backend).
//!
//! Owns the SQLite connection pool, its pragmas (WAL, `synchronous=FULL` so a
//! committed audit record survives a crash, busy timeout) and the SQLite
//! migrations. Audit appends take the write lock up front (`BEGIN IMMEDIATE`)
//! so the read-last-hash/insert pair is atomic across processes.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Executor, Row, SqlitePool};

use crate::{
    AuditEntry, AuditEvent, AuditFilter, Error, Health, Result, Revocation, SecretRecord, Store, TaskRecord, chain,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../migrations/sqlite/0001_init.sql"))];

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(v, d, sql)| Migration::new(*v, Cow::Borrowed(*d), MigrationType::Simple, Cow::Borrowed(*sql), false))
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// SQLite-backed [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
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
            .connect_with(opts)
            .await
            .map_err(|e| Error::Open { path: path.display().to_string(), source: e })?;
        restrict_permissions(path);
        migrator().run(&pool).await?;
        Ok(Self { pool })
    }

    /// Open an existing database without creating it; used by read-only commands.
    pub async fn open_existing(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::Open {
                path: path.display().to_string(),
                source: sqlx::Error::Configuration("the database file does not exist".into()),
            });
        }
        Self::open(path).await
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

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn secret_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<SecretRecord> {
    Ok(SecretRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        environment: r.try_get("environment")?,
        tier: r.try_get("tier")?,
        upstream: r.try_get("upstream")?,
        description: r.try_get("description")?,
        version: r.try_get("version")?,
        key_id: r.try_get("key_id")?,
        wrapped_key: r.try_get("wrapped_key")?,
        nonce: r.try_get("nonce")?,
        ciphertext: r.try_get("ciphertext")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn task_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<TaskRecord> {
    let grants: String = r.try_get("grants")?;
    Ok(TaskRecord {
        id: r.try_get("id")?,
        agent: r.try_get("agent")?,
        environment: r.try_get("environment")?,
        grants: serde_json::from_str(&grants).map_err(|e| Error::Corrupt { what: "task grants", detail: e.to_string() })?,
        purpose: r.try_get("purpose")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        ended_at: r.try_get("ended_at")?,
        created_by: r.try_get("created_by")?,
    })
}

fn audit_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry> {
    let detail: String = r.try_get("detail")?;
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        event: AuditEvent {
            id: r.try_get("id")?,
            ts_ms: r.try_get("ts_ms")?,
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            subject: r.try_get("subject")?,
            outcome: r.try_get("outcome")?,
            task_id: r.try_get("task_id")?,
            detail: serde_json::from_str(&detail).map_err(|e| Error::Corrupt { what: "audit detail", detail: e.to_string() })?,
        },
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

const SECRET_COLUMNS: &str = "id, name, environment, tier, upstream, description, version, key_id, wrapped_key, nonce, ciphertext, created_at, updated_at";

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<Health> {
        let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&self.pool).await?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check").fetch_one(&self.pool).await?;
        Ok(Health { backend: "sqlite", schema_version: version, detail: format!("journal_mode={mode}, quick_check={check}") })
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<bool> {
        let r = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn insert_secret(&self, rec: &SecretRecord) -> Result<()> {
        let q = format!("INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)");
        sqlx::query(&q)
            .bind(&rec.id)
            .bind(&rec.name)
            .bind(&rec.environment)
            .bind(&rec.tier)
            .bind(&rec.upstream)
            .bind(&rec.description)
            .bind(rec.version)
            .bind(&rec.key_id)
            .bind(&rec.wrapped_key)
            .bind(&rec.nonce)
            .bind(&rec.ciphertext)
            .bind(rec.created_at)
            .bind(rec.updated_at)
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::DuplicateSecret { name: rec.name.clone(), environment: rec.environment.clone() }
                } else {
                    e.into()
                }
            })?;
        Ok(())
    }

    async fn find_secrets(&self, name: &str) -> Result<Vec<SecretRecord>> {
        let q = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1 ORDER BY environment");
        sqlx::query(&q).bind(name).fetch_all(&self.pool).await?.iter().map(secret_from_row).collect()
    }

    async fn get_secret(&self, name: &str, environment: &str) -> Result<Option<SecretRecord>> {
        let q = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1 AND environment = $2");
        sqlx::query(&q).bind(name).bind(environment).fetch_optional(&self.pool).await?.as_ref().map(secret_from_row).transpose()
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>> {
        let q = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name, environment");
        sqlx::query(&q).fetch_all(&self.pool).await?.iter().map(secret_from_row).collect()
    }

    async fn replace_secret(&self, rec: &SecretRecord, expected_version: i64) -> Result<()> {
        let r = sqlx::query(
            "UPDATE secrets SET version = $1, key_id = $2, wrapped_key = $3, nonce = $4, ciphertext = $5, updated_at = $6,
             tier = $7, upstream = $8, description = $9
             WHERE id = $10 AND version = $11",
        )
        .bind(rec.version)
        .bind(&rec.key_id)
        .bind(&rec.wrapped_key)
        .bind(&rec.nonce)
        .bind(&rec.ciphertext)
        .bind(rec.updated_at)
        .bind(&rec.tier)
        .bind(&rec.upstream)
        .bind(&rec.description)
        .bind(&rec.id)
        .bind(expected_version)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 1 { Ok(()) } else { Err(Error::NotFound { kind: "secret", id: rec.name.clone() }) }
    }

    async fn delete_secret(&self, id: &str) -> Result<()> {
        let r = sqlx::query("DELETE FROM secrets WHERE id = $1").bind(id).execute(&self.pool).await?;
        if r.rows_affected() == 1 { Ok(()) } else { Err(Error::NotFound { kind: "secret", id: id.to_owned() }) }
    }

    async fn insert_task(&self, t: &TaskRecord) -> Result<()> {
        let grants = serde_json::to_string(&t.grants).expect("strings serialise");
        sqlx::query(
            "INSERT INTO tasks (id, agent, environment, grants, purpose, created_at, expires_at, ended_at, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&t.id)
        .bind(&t.agent)
        .bind(&t.environment)
        .bind(grants)
        .bind(&t.purpose)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.ended_at)
        .bind(&t.created_by)
        .execute(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::DuplicateTask(t.id.clone()) } else { e.into() })?;
        Ok(())
    }

    async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>> {
        sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.as_ref().map(task_from_row).transpose()
    }

    async fn list_tasks(&self) -> Result<Vec<TaskRecord>> {
        sqlx::query("SELECT * FROM tasks ORDER BY created_at DESC, id DESC").fetch_all(&self.pool).await?.iter().map(task_from_row).collect()
    }

    async fn end_task(&self, id: &str, at: i64, reason: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT ended_at FROM tasks WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let Some(ended) = exists else {
            return Err(Error::NotFound { kind: "task", id: id.to_owned() });
        };
        sqlx::query("UPDATE tasks SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL").bind(at).bind(id).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO revocations (task_id, revoked_at, reason) VALUES ($1, $2, $3) ON CONFLICT (task_id) DO NOTHING")
            .bind(id)
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ended.is_none())
    }

    async fn revocations_since(&self, after: i64) -> Result<Vec<Revocation>> {
        let rows = sqlx::query("SELECT seq, task_id, revoked_at, reason FROM revocations WHERE seq > $1 ORDER BY seq")
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    seq: r.try_get("seq")?,
                    task_id: r.try_get("task_id")?,
                    revoked_at: r.try_get("revoked_at")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    async fn append_audit_batch(&self, events: &[AuditEvent]) -> Result<Vec<AuditEntry>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        // Take the write lock before reading the chain head, so two writers
        // (CLI and gateway, or two gateways) can never fork the chain.
        conn.execute("BEGIN IMMEDIATE").await?;
        let result: Result<Vec<AuditEntry>> = async {
            let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await?;
            let (mut seq, mut prev) = match head {
                Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                None => (0, chain::GENESIS.to_owned()),
            };
            let mut out = Vec::with_capacity(events.len());
            for ev in events {
                seq += 1;
                let hash = chain::link(&prev, seq, ev);
                let detail = serde_json::to_string(&ev.detail).expect("JSON values serialise");
                sqlx::query(
                    "INSERT INTO audit (seq, id, ts_ms, actor, action, subject, outcome, task_id, detail, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(seq)
                .bind(&ev.id)
                .bind(ev.ts_ms)
                .bind(&ev.actor)
                .bind(&ev.action)
                .bind(&ev.subject)
                .bind(&ev.outcome)
                .bind(&ev.task_id)
                .bind(detail)
                .bind(&prev)
                .bind(&hash)
                .execute(&mut *conn)
                .await?;
                out.push(AuditEntry { seq, event: ev.clone(), prev_hash: std::mem::replace(&mut prev, hash.clone()), hash });
            }
            Ok(out)
        }
        .await;
        match result {
            Ok(out) => {
                conn.execute("COMMIT").await?;
                Ok(out)
            }
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                // A connection whose transaction state is unknown must not go back to the pool.
                let _ = conn.detach().close().await;
                Err(e)
            }
        }
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let prefix = f.action_prefix.as_ref().map(|p| format!("{}%", p.replace('%', "\\%").replace('_', "\\_")));
        let limit = f.limit.map(i64::from).unwrap_or(-1);
        // Newest `limit` entries, returned oldest first.
        let rows = sqlx::query(
            "SELECT * FROM (
                SELECT * FROM audit
                WHERE ($1 IS NULL OR task_id = $1)
                  AND ($2 IS NULL OR action LIKE $2 ESCAPE '\\')
                  AND seq > $3
                ORDER BY seq DESC LIMIT $4
             ) ORDER BY seq ASC",
        )
        .bind(&f.task_id)
        .bind(prefix)
        .bind(f.after_seq.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
