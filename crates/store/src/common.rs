//! The parts of the `Store` implementation that are the same SQL on every
//! backend (queries use `$n` placeholders, which SQLite and PostgreSQL both
//! accept). Each backend supplies `begin_audit` (a transaction holding the
//! audit write lock), `begin_write` (a read-then-write transaction that cannot
//! fail on a stale snapshot), `list_audit_rows`, `health` and its row type.

/// Implement [`crate::Store`] for a backend type whose `pool` field is a `sqlx::Pool<$db>`.
macro_rules! impl_store {
    ($store:ty, $row:ty) => {
        fn secret_from_row(r: &$row) -> $crate::Result<$crate::SecretRecord> {
            use sqlx::Row;
            Ok($crate::SecretRecord {
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

        fn task_from_row(r: &$row) -> $crate::Result<$crate::TaskRecord> {
            use sqlx::Row;
            let grants: String = r.try_get("grants")?;
            Ok($crate::TaskRecord {
                id: r.try_get("id")?,
                agent: r.try_get("agent")?,
                environment: r.try_get("environment")?,
                grants: serde_json::from_str(&grants).map_err(|e| $crate::Error::Corrupt { what: "task grants", detail: e.to_string() })?,
                purpose: r.try_get("purpose")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                ended_at: r.try_get("ended_at")?,
                created_by: r.try_get("created_by")?,
            })
        }

        /// Rows per multi-row `INSERT` at most. A batch is written in power-of-two chunks
        /// (256, 128, …, 1 rows), so there are at most nine distinct statements and every one
        /// stays in the connection's prepared-statement cache; 256 × 11 parameters is far
        /// below both backends' limits (SQLite 32,766, PostgreSQL 65,535).
        const AUDIT_CHUNK: usize = 256;

        /// The `INSERT` of `rows` audit rows (`rows` a power of two ≤ [`AUDIT_CHUNK`]), with
        /// the backend's placeholders (`NUMBERED_PLACEHOLDERS`: `$n`, else positional `?`).
        fn audit_insert_sql(rows: usize) -> &'static str {
            static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
            let all = SQL.get_or_init(|| {
                (0..=AUDIT_CHUNK.trailing_zeros())
                    .map(|k| {
                        let mut q = String::from("INSERT INTO audit (seq, id, ts_ms, actor, action, subject, outcome, task_id, detail, prev_hash, hash) VALUES ");
                        for r in 0..(1usize << k) {
                            let b = r * 11;
                            if r > 0 {
                                q.push(',');
                            }
                            q.push('(');
                            for c in 1..=11 {
                                if c > 1 {
                                    q.push(',');
                                }
                                if <$store>::NUMBERED_PLACEHOLDERS {
                                    q.push_str(&format!("${}", b + c));
                                } else {
                                    q.push('?');
                                }
                            }
                            q.push(')');
                        }
                        q
                    })
                    .collect()
            });
            &all[rows.trailing_zeros() as usize]
        }

        impl $store {
            /// Append `events` to the hash chain in one transaction that holds the audit write
            /// lock from its first statement (two writers never read the same head), with
            /// one multi-row `INSERT` per chunk rather than one statement per record (each
            /// statement is a round trip to the database connection). Returns the hash the
            /// chain had before, and `(seq, hash)` of each appended event.
            async fn append_audit_chain(&self, events: &[$crate::AuditEvent]) -> $crate::Result<(String, Vec<(i64, String)>)> {
                use sqlx::Row;
                struct Pending<'e> {
                    ev: &'e $crate::AuditEvent,
                    seq: i64,
                    detail: String,
                    hash: String,
                }
                if events.is_empty() {
                    return Ok((String::new(), Vec::new()));
                }
                let mut tx = self.begin_audit().await?;
                let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *tx).await?;
                let (mut seq, first) = match head {
                    Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
                    None => (0, $crate::chain::GENESIS.to_owned()),
                };
                let mut rows = Vec::with_capacity(events.len());
                let mut buf = Vec::with_capacity(512);
                for ev in events {
                    seq += 1;
                    buf.clear();
                    let detail = $crate::chain::canonical_into(&mut buf, seq, ev);
                    let prev = rows.last().map_or(first.as_str(), |r: &Pending<'_>| r.hash.as_str());
                    let hash = $crate::chain::link_canonical(prev, &buf);
                    let detail = String::from_utf8(buf[detail].to_vec()).expect("serde_json writes UTF-8");
                    rows.push(Pending { ev, seq, detail, hash });
                }
                let mut rest: &[Pending<'_>] = &rows;
                let mut prev = first.as_str();
                while !rest.is_empty() {
                    let n = 1usize << rest.len().min(AUDIT_CHUNK).ilog2();
                    let (chunk, tail) = rest.split_at(n);
                    let mut q = sqlx::query(audit_insert_sql(n));
                    for r in chunk {
                        let ev = r.ev;
                        q = q
                            .bind(r.seq)
                            .bind(&ev.id)
                            .bind(ev.ts_ms)
                            .bind(&ev.actor)
                            .bind(&ev.action)
                            .bind(&ev.subject)
                            .bind(&ev.outcome)
                            .bind(&ev.task_id)
                            .bind(&r.detail)
                            .bind(prev)
                            .bind(&r.hash);
                        prev = &r.hash;
                    }
                    q.execute(&mut *tx).await?;
                    rest = tail;
                }
                tx.commit().await?;
                Ok((first, rows.into_iter().map(|r| (r.seq, r.hash)).collect()))
            }
        }

        fn audit_from_row(r: &$row) -> $crate::Result<$crate::AuditEntry> {
            use sqlx::Row;
            let detail: String = r.try_get("detail")?;
            Ok($crate::AuditEntry {
                seq: r.try_get("seq")?,
                event: $crate::AuditEvent {
                    id: r.try_get("id")?,
                    ts_ms: r.try_get("ts_ms")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    subject: r.try_get("subject")?,
                    outcome: r.try_get("outcome")?,
                    task_id: r.try_get("task_id")?,
                    detail: serde_json::from_str(&detail).map_err(|e| $crate::Error::Corrupt { what: "audit detail", detail: e.to_string() })?,
                },
                prev_hash: r.try_get("prev_hash")?,
                hash: r.try_get("hash")?,
            })
        }

        fn approval_from_row(r: &$row) -> $crate::Result<$crate::ApprovalRecord> {
            use sqlx::Row;
            let status: String = r.try_get("status")?;
            Ok($crate::ApprovalRecord {
                id: r.try_get("id")?,
                created_at: r.try_get("created_at")?,
                task_id: r.try_get("task_id")?,
                agent: r.try_get("agent")?,
                upstream: r.try_get("upstream")?,
                operation: r.try_get("operation")?,
                resource: r.try_get("resource")?,
                environment: r.try_get("environment")?,
                request_hash: r.try_get("request_hash")?,
                reason: r.try_get("reason")?,
                status: $crate::ApprovalStatus::parse(&status)?,
                decided_by: r.try_get("decided_by")?,
                decided_at: r.try_get("decided_at")?,
                decision_note: r.try_get("decision_note")?,
                expires_at: r.try_get("expires_at")?,
                used_at: r.try_get("used_at")?,
            })
        }

        fn is_unique_violation(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
        }

        const SECRET_COLUMNS: &str =
            "id, name, environment, tier, upstream, description, version, key_id, wrapped_key, nonce, ciphertext, created_at, updated_at";

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn health(&self) -> $crate::Result<$crate::Health> {
                self.backend_health().await
            }

            async fn checkpoint(&self) -> $crate::Result<()> {
                self.backend_checkpoint().await
            }

            async fn get_meta(&self, key: &str) -> $crate::Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.pool).await?)
            }

            async fn put_meta_if_absent(&self, key: &str, value: &str) -> $crate::Result<bool> {
                let r = sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_secret(&self, rec: &$crate::SecretRecord) -> $crate::Result<()> {
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
                            $crate::Error::DuplicateSecret { name: rec.name.clone(), environment: rec.environment.clone() }
                        } else {
                            e.into()
                        }
                    })?;
                Ok(())
            }

            async fn find_secrets(&self, name: &str) -> $crate::Result<Vec<$crate::SecretRecord>> {
                let q = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1 ORDER BY environment");
                sqlx::query(&q).bind(name).fetch_all(&self.pool).await?.iter().map(secret_from_row).collect()
            }

            async fn get_secret(&self, name: &str, environment: &str) -> $crate::Result<Option<$crate::SecretRecord>> {
                let q = format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1 AND environment = $2");
                sqlx::query(&q).bind(name).bind(environment).fetch_optional(&self.pool).await?.as_ref().map(secret_from_row).transpose()
            }

            async fn list_secrets(&self) -> $crate::Result<Vec<$crate::SecretRecord>> {
                let q = format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name, environment");
                sqlx::query(&q).fetch_all(&self.pool).await?.iter().map(secret_from_row).collect()
            }

            async fn replace_secret(&self, rec: &$crate::SecretRecord, expected_version: i64) -> $crate::Result<()> {
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
                if r.rows_affected() == 1 { Ok(()) } else { Err($crate::Error::NotFound { kind: "secret", id: rec.name.clone() }) }
            }

            async fn delete_secret(&self, id: &str) -> $crate::Result<()> {
                let r = sqlx::query("DELETE FROM secrets WHERE id = $1").bind(id).execute(&self.pool).await?;
                if r.rows_affected() == 1 { Ok(()) } else { Err($crate::Error::NotFound { kind: "secret", id: id.to_owned() }) }
            }

            async fn insert_task(&self, t: &$crate::TaskRecord) -> $crate::Result<()> {
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
                .map_err(|e| if is_unique_violation(&e) { $crate::Error::DuplicateTask(t.id.clone()) } else { e.into() })?;
                Ok(())
            }

            async fn get_task(&self, id: &str) -> $crate::Result<Option<$crate::TaskRecord>> {
                sqlx::query("SELECT * FROM tasks WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.as_ref().map(task_from_row).transpose()
            }

            async fn list_tasks(&self) -> $crate::Result<Vec<$crate::TaskRecord>> {
                sqlx::query("SELECT * FROM tasks ORDER BY created_at DESC, id DESC").fetch_all(&self.pool).await?.iter().map(task_from_row).collect()
            }

            async fn end_task(&self, id: &str, at: i64, reason: &str) -> $crate::Result<bool> {
                let mut tx = self.begin_write().await?;
                let exists: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT ended_at FROM tasks WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
                let Some(ended) = exists else {
                    return Err($crate::Error::NotFound { kind: "task", id: id.to_owned() });
                };
                sqlx::query("UPDATE tasks SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL").bind(at).bind(id).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO revocations (task_id, revoked_at, reason) VALUES ($1, $2, $3) ON CONFLICT (task_id) DO NOTHING")
                    .bind(id)
                    .bind(at)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                self.after_revocation(&mut tx).await?;
                tx.commit().await?;
                Ok(ended.is_none())
            }

            async fn revocations_since(&self, after: i64) -> $crate::Result<Vec<$crate::Revocation>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT seq, task_id, revoked_at, reason FROM revocations WHERE seq > $1 ORDER BY seq")
                    .bind(after)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::Revocation {
                            seq: r.try_get("seq")?,
                            task_id: r.try_get("task_id")?,
                            revoked_at: r.try_get("revoked_at")?,
                            reason: r.try_get("reason")?,
                        })
                    })
                    .collect()
            }

            async fn create_approval(&self, a: &$crate::ApprovalRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO approvals (id, created_at, task_id, agent, upstream, operation, resource, environment, request_hash,
                     reason, status, decided_by, decided_at, decision_note, expires_at, used_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .bind(&a.id)
                .bind(a.created_at)
                .bind(&a.task_id)
                .bind(&a.agent)
                .bind(&a.upstream)
                .bind(&a.operation)
                .bind(&a.resource)
                .bind(&a.environment)
                .bind(&a.request_hash)
                .bind(&a.reason)
                .bind(a.status.as_str())
                .bind(&a.decided_by)
                .bind(a.decided_at)
                .bind(&a.decision_note)
                .bind(a.expires_at)
                .bind(a.used_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn get_approval(&self, id: &str) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                sqlx::query("SELECT * FROM approvals WHERE id = $1").bind(id).fetch_optional(&self.pool).await?.as_ref().map(approval_from_row).transpose()
            }

            async fn list_approvals(&self, status: Option<$crate::ApprovalStatus>) -> $crate::Result<Vec<$crate::ApprovalRecord>> {
                let rows = match status {
                    Some(s) => sqlx::query("SELECT * FROM approvals WHERE status = $1 ORDER BY created_at DESC, id DESC").bind(s.as_str()).fetch_all(&self.pool).await?,
                    None => sqlx::query("SELECT * FROM approvals ORDER BY created_at DESC, id DESC").fetch_all(&self.pool).await?,
                };
                rows.iter().map(approval_from_row).collect()
            }

            async fn find_approval(&self, task_id: &str, request_hash: &str, now: i64) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                sqlx::query(
                    "SELECT * FROM approvals WHERE task_id = $1 AND request_hash = $2 AND status IN ('pending', 'approved') AND expires_at >= $3
                     ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(task_id)
                .bind(request_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(approval_from_row)
                .transpose()
            }

            async fn decide_approval(
                &self,
                id: &str,
                approve: bool,
                by: &str,
                note: Option<&str>,
                at: i64,
                valid_until: i64,
            ) -> $crate::Result<$crate::ApprovalRecord> {
                let status = if approve { "approved" } else { "denied" };
                let r = sqlx::query(
                    "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, decision_note = $4,
                     expires_at = CASE WHEN $1 = 'approved' THEN $5 ELSE expires_at END
                     WHERE id = $6 AND status = 'pending' AND expires_at >= $3",
                )
                .bind(status)
                .bind(by)
                .bind(at)
                .bind(note)
                .bind(valid_until)
                .bind(id)
                .execute(&self.pool)
                .await?;
                if r.rows_affected() != 1 {
                    return Err($crate::Error::NotFound { kind: "pending approval", id: id.to_owned() });
                }
                self.get_approval(id).await?.ok_or_else(|| $crate::Error::NotFound { kind: "approval", id: id.to_owned() })
            }

            async fn consume_approval(&self, task_id: &str, request_hash: &str, now: i64) -> $crate::Result<Option<$crate::ApprovalRecord>> {
                let mut tx = self.begin_write().await?;
                let found = sqlx::query(
                    "SELECT * FROM approvals WHERE task_id = $1 AND request_hash = $2 AND status = 'approved' AND expires_at >= $3
                     ORDER BY decided_at DESC LIMIT 1",
                )
                .bind(task_id)
                .bind(request_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = found else { return Ok(None) };
                let mut rec = approval_from_row(&row)?;
                // The status guard makes the use single even if two requests race.
                let r = sqlx::query("UPDATE approvals SET status = 'used', used_at = $1 WHERE id = $2 AND status = 'approved'")
                    .bind(now)
                    .bind(&rec.id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                if r.rows_affected() != 1 {
                    return Ok(None);
                }
                rec.status = $crate::ApprovalStatus::Used;
                rec.used_at = Some(now);
                Ok(Some(rec))
            }

            async fn append_audit_batch(&self, events: &[$crate::AuditEvent]) -> $crate::Result<Vec<$crate::AuditEntry>> {
                let (first, hashes) = self.append_audit_chain(events).await?;
                let mut prev = first;
                Ok(events
                    .iter()
                    .zip(hashes)
                    .map(|(ev, (seq, hash))| $crate::AuditEntry { seq, event: ev.clone(), prev_hash: std::mem::replace(&mut prev, hash.clone()), hash })
                    .collect())
            }

            async fn append_audit_events(&self, events: &[$crate::AuditEvent]) -> $crate::Result<i64> {
                let (_, hashes) = self.append_audit_chain(events).await?;
                Ok(hashes.last().map_or(0, |(seq, _)| *seq))
            }

            async fn list_audit(&self, f: &$crate::AuditFilter) -> $crate::Result<Vec<$crate::AuditEntry>> {
                let prefix = f.action_prefix.as_ref().map(|p| format!("{}%", p.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")));
                let limit = f.limit.map(i64::from).unwrap_or(i64::MAX);
                // Newest `limit` entries, returned oldest first.
                let q = match &f.task_id {
                    Some(task) => sqlx::query(Self::LIST_AUDIT_TASK_SQL).bind(task),
                    None => sqlx::query(Self::LIST_AUDIT_SQL),
                };
                let rows = q.bind(prefix).bind(f.after_seq.unwrap_or(0)).bind(limit).fetch_all(&self.pool).await?;
                rows.iter().map(audit_from_row).collect()
            }
        }
    };
}

pub(crate) use impl_store;
