//! The PostgreSQL store, for several gateway replicas sharing one database.
//!
//! Owns the PostgreSQL pool and migrations. Audit appends serialise on a
//! transaction-scoped advisory lock so replicas never fork the chain; ending a
//! task sends `NOTIFY airlock_revocations` so replicas can refresh at once
//! (they also poll, so a missed notification costs at most one poll interval).

use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{Executor, PgPool, Postgres, Transaction};

use crate::{Error, Health, Result};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/postgres/0001_init.sql")),
    (2, "approvals", include_str!("../migrations/postgres/0002_approvals.sql")),
    (3, "audit indexes", include_str!("../migrations/postgres/0003_audit_indexes.sql")),
];

/// The advisory lock key that serialises audit appends ("airlock" in ASCII).
const AUDIT_LOCK: i64 = 0x0061_6972_6c6f_636b;

/// PostgreSQL-backed [`crate::Store`].
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connect to `url` and apply migrations in the default schema.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_in_schema(url, None).await
    }

    /// Connect and use `schema` (created if missing) for every connection;
    /// lets several airlock installations, or tests, share one database.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Self> {
        let open_err = |e: sqlx::Error| Error::Open { path: redact_url(url), source: e };
        if let Some(s) = schema
            && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
        {
            return Err(Error::Corrupt { what: "schema name", detail: format!("{s:?} must be lowercase letters, digits and '_'") });
        }
        let schema_owned = schema.map(str::to_owned);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                let schema = schema_owned.clone();
                Box::pin(async move {
                    if let Some(s) = schema {
                        conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}").as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(open_err)?;
        crate::sqlite::migrator(MIGRATIONS).run(&pool).await?;
        Ok(Self { pool })
    }

    /// The listing; with a task filter the second form, whose `task_id = $1` the `audit_task`
    /// index answers (an `IS NULL OR` guard would make the planner scan the whole log).
    const LIST_AUDIT_SQL: &'static str = "SELECT * FROM (
            SELECT * FROM audit
            WHERE ($1::text IS NULL OR action LIKE $1 ESCAPE '\\')
              AND seq > $2
            ORDER BY seq DESC LIMIT $3
         ) AS newest ORDER BY seq ASC";

    const LIST_AUDIT_TASK_SQL: &'static str = "SELECT * FROM (
            SELECT * FROM audit
            WHERE task_id = $1
              AND ($2::text IS NULL OR action LIKE $2 ESCAPE '\\')
              AND seq > $3
            ORDER BY seq DESC LIMIT $4
         ) AS newest ORDER BY seq ASC";

    /// PostgreSQL only understands `$n` placeholders.
    const NUMBERED_PLACEHOLDERS: bool = true;

    async fn begin_audit(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await?;
        Ok(tx)
    }

    /// A read-then-write transaction (row locks and status guards do the rest).
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// PostgreSQL checkpoints by itself.
    async fn backend_checkpoint(&self) -> Result<()> {
        Ok(())
    }

    async fn after_revocation(&self, tx: &mut Transaction<'static, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_notify('airlock_revocations', '')").execute(&mut **tx).await?;
        Ok(())
    }

    async fn backend_health(&self) -> Result<Health> {
        let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success").fetch_one(&self.pool).await?;
        let server: String = sqlx::query_scalar("SHOW server_version").fetch_one(&self.pool).await?;
        Ok(Health { backend: "postgres", schema_version: version, detail: format!("server_version={server}") })
    }
}

/// A connection URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

crate::common::impl_store!(PgStore, PgRow);

#[cfg(test)]
mod tests {
    #[test]
    fn urls_lose_their_password() {
        assert_eq!(super::redact_url("postgres://u:hunter2@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact_url("postgres://h/db"), "postgres://h/db");
    }
}
