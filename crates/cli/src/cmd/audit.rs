//! `airlock audit …`: read and verify the hash-chained audit log.

use std::process::ExitCode;

use airlock_store::{AuditFilter, Store, chain};

use crate::app::{CmdResult, Ctx, Failure, exit, now_unix, print_json, rfc3339};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Show audit records, oldest first.
    List(ListArgs),
    /// Recompute the hash chain over the whole log; exit 1 naming the first altered record.
    Verify,
    /// What each task was granted and what it used: grants never used, and grants wider
    /// than their use (`github:write` used only to read → `github:read` would do).
    ///
    /// Counted from the task's `gateway.request` records: an allowed operation uses every
    /// grant that covers it (the gateway's own rule); refused requests use nothing.
    ///
    ///   airlock audit usage                 every task, newest first
    ///   airlock audit usage --task ID       one task
    ///   airlock audit usage --unused --json tasks with an unused grant, as JSON
    #[command(verbatim_doc_comment)]
    Usage(UsageArgs),
}

#[derive(clap::Args, Debug)]
pub struct UsageArgs {
    /// Only this task.
    #[arg(long)]
    task: Option<String>,
    /// Only tasks with at least one grant they never used.
    #[arg(long)]
    unused: bool,
    /// At most this many tasks (the newest).
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// One task's row of `airlock audit usage`.
#[derive(serde::Serialize)]
struct TaskUsage {
    task_id: String,
    agent: String,
    environment: String,
    status: &'static str,
    created: String,
    #[serde(flatten)]
    usage: airlock_run::usage::Usage,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only records of this task.
    #[arg(long)]
    task: Option<String>,
    /// Only actions starting with this prefix (e.g. `secret.`, `gateway.`).
    #[arg(long)]
    action: Option<String>,
    /// At most this many (the newest).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Verify the whole chain from the first record; Ok(number of records) or the
/// first record that breaks it. (Signed checkpoints will let this start midway.)
pub async fn verify_chain(store: &dyn Store) -> Result<usize, String> {
    let all = store.list_audit(&AuditFilter::default()).await.map_err(|e| e.to_string())?;
    chain::verify(chain::GENESIS.to_owned(), 0, &all).map_err(|b| format!("audit record {} fails verification: {}", b.seq, b.reason))
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> CmdResult {
    let state = ctx.checked_state()?;
    let store = ctx.store(&state).await?;
    match cmd {
        AuditCmd::List(a) => {
            let entries = store.list_audit(&AuditFilter { task_id: a.task, action_prefix: a.action, after_seq: None, limit: Some(a.limit) }).await?;
            if a.json {
                print_json(&entries);
            } else {
                for e in &entries {
                    let ts = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.event.ts_ms) * 1_000_000)
                        .ok()
                        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                        .unwrap_or_default();
                    println!("{:>5} {} {:<18} {:<22} {:<10} {} {}", e.seq, ts, e.event.actor, e.event.action, e.event.outcome, e.event.subject, e.event.detail);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Usage(a) => usage(&*store, a).await,
        AuditCmd::Verify => match verify_chain(&*store).await {
            Ok(n) => {
                println!("audit log intact: {n} records, hash chain verified");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(Failure::new(exit::FAILED, "audit_tampered", e)),
        },
    }
}

async fn usage(store: &dyn Store, a: UsageArgs) -> CmdResult {
    let tasks = match &a.task {
        Some(id) => vec![store.get_task(id).await?.ok_or_else(|| Failure::from(airlock_token::Error::UnknownTask(id.clone())))?],
        None => store.list_tasks().await?,
    };
    let now = now_unix();
    let mut rows = Vec::new();
    for t in tasks {
        if rows.len() == a.limit {
            break;
        }
        let entries =
            store.list_audit(&AuditFilter { task_id: Some(t.id.clone()), action_prefix: Some("gateway.request".into()), ..Default::default() }).await?;
        let usage = airlock_run::usage::grant_usage(&t.grants, &entries);
        if a.unused && !usage.grants.iter().any(|g| g.unused()) {
            continue;
        }
        rows.push(TaskUsage {
            status: crate::cmd::task::status(&t, now),
            created: rfc3339(t.created_at),
            task_id: t.id,
            agent: t.agent,
            environment: t.environment,
            usage,
        });
    }
    if a.json {
        print_json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("{}", if a.unused { "no task has a grant it never used" } else { "no tasks" });
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        println!("task {}  agent {}  {}  {} (started {})", r.task_id, r.agent, r.environment, r.status, r.created);
        for g in &r.usage.grants {
            let what = if g.unused() {
                "never used".to_owned()
            } else {
                let mut s = format!("{} operation(s)", g.operations);
                if let Some(h) = &g.highest {
                    s += &format!(", at most {h}");
                }
                if let Some(n) = &g.narrower {
                    s += &format!(" — {n} would have done");
                }
                s
            };
            println!("  {:<32} {what}", g.grant);
        }
        for g in &r.usage.unparsable_grants {
            println!("  {g:<32} not a valid grant; not counted");
        }
        println!("  requests: {} allowed, {} refused", r.usage.allowed_requests, r.usage.refused_requests);
    }
    Ok(ExitCode::SUCCESS)
}
