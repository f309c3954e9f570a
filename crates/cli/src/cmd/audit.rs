//! `airlock audit …`: read and verify the hash-chained audit log.

use std::process::ExitCode;

use airlock_store::{AuditFilter, Store, chain};

use crate::app::{CmdResult, Ctx, Failure, exit, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Show audit records, oldest first.
    List(ListArgs),
    /// Recompute the hash chain over the whole log; exit 1 naming the first altered record.
    Verify,
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
            let entries = store
                .list_audit(&AuditFilter { task_id: a.task, action_prefix: a.action, after_seq: None, limit: Some(a.limit) })
                .await?;
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
        AuditCmd::Verify => match verify_chain(&*store).await {
            Ok(n) => {
                println!("audit log intact: {n} records, hash chain verified");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(Failure::new(exit::FAILED, "audit_tampered", e)),
        },
    }
}
