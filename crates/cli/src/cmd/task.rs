//! `airlock task …`: start, list, show and end tasks.

use std::process::ExitCode;

use airlock_store::TaskRecord;
use airlock_token::{Broker, StartTask, TokenAuthority};
use airlock_types::{Environment, Grant, Name};
use serde::Serialize;

use crate::app::{CmdResult, Ctx, Failure, actor, color, now_unix, parse_duration, print_json, rfc3339};

#[derive(clap::Subcommand, Debug)]
pub enum TaskCmd {
    /// Start a task and print its task token (stdout: the token alone, so `TOKEN=$(airlock task start …)` works).
    ///
    /// Example: airlock task start --agent coder --env staging --grant github:read --grant railway-staging:write --ttl 30m --purpose "fix CI"
    Start(StartArgs),
    /// List tasks, newest first.
    List(ListArgs),
    /// Show one task.
    Show(ShowArgs),
    /// End a task: every token minted for it or narrowed from it stops working (on every gateway within a second).
    End(EndArgs),
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// The agent doing the work.
    #[arg(long)]
    agent: String,
    /// The one environment the task may touch.
    #[arg(long)]
    env: String,
    /// UPSTREAM:CAPABILITY, repeatable. CAPABILITY is read, write, destroy, or an operation name.
    #[arg(long = "grant", value_name = "UPSTREAM:CAPABILITY", required = true)]
    grants: Vec<String>,
    /// Token lifetime (e.g. 30m, 2h); at most the configured cap (default 8h).
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Why the task exists (recorded in the audit log and visible to policy).
    #[arg(long)]
    purpose: Option<String>,
    /// Print id, token and expiry as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    /// Include ended and expired tasks.
    #[arg(long)]
    all: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// Task id.
    id: String,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct EndArgs {
    /// Task id.
    id: String,
    /// Why (recorded in the audit log).
    #[arg(long, default_value = "ended by operator")]
    reason: String,
}

#[derive(Serialize)]
struct TaskView<'a> {
    #[serde(flatten)]
    task: &'a TaskRecord,
    status: &'static str,
    expires: String,
}

pub(crate) fn status(t: &TaskRecord, now: i64) -> &'static str {
    if t.ended_at.is_some() {
        "ended"
    } else if now > t.expires_at {
        "expired"
    } else {
        "active"
    }
}

pub(crate) fn parse_grants(gs: &[String]) -> Result<Vec<Grant>, Failure> {
    gs.iter().map(|g| g.parse::<Grant>().map_err(|e| Failure::usage(e.to_string()))).collect()
}

pub async fn start(ctx: &Ctx, a: &StartArgs) -> Result<(TaskRecord, String), Failure> {
    let req = StartTask {
        agent: Name::parse("agent", &a.agent).map_err(|e| Failure::usage(e.to_string()))?,
        environment: a.env.parse::<Environment>().map_err(|e| Failure::usage(e.to_string()))?,
        grants: parse_grants(&a.grants)?,
        ttl: parse_duration(&a.ttl).map_err(|e| Failure::usage(format!("--ttl: {e}")))?,
        purpose: a.purpose.clone(),
        actor: actor(),
    };
    let max_ttl = ctx.max_ttl()?;
    ctx.check_grants(&req.grants)?;
    let state = ctx.checked_state()?;
    let store = ctx.store(&state).await?;
    let authority = TokenAuthority::load(&state)?;
    let broker = Broker::new(store, authority, max_ttl);
    Ok(broker.start_task(&req).await?)
}

pub async fn run(ctx: &Ctx, cmd: TaskCmd) -> CmdResult {
    match cmd {
        TaskCmd::Start(a) => {
            let (task, token) = start(ctx, &a).await?;
            if a.json {
                print_json(&serde_json::json!({
                    "id": task.id, "token": token, "agent": task.agent, "environment": task.environment,
                    "grants": task.grants, "expires_at": rfc3339(task.expires_at),
                }));
            } else {
                eprintln!("started task {} for agent {} in {} (expires {})", task.id, task.agent, task.environment, rfc3339(task.expires_at));
                println!("{token}");
            }
        }
        TaskCmd::List(a) => {
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let now = now_unix();
            let tasks: Vec<TaskRecord> = store.list_tasks().await?.into_iter().filter(|t| a.all || status(t, now) == "active").collect();
            let views: Vec<TaskView<'_>> = tasks.iter().map(|t| TaskView { task: t, status: status(t, now), expires: rfc3339(t.expires_at) }).collect();
            if a.json {
                print_json(&views);
            } else if views.is_empty() {
                println!("no {}tasks; start one with `airlock task start`", if a.all { "" } else { "active " });
            } else {
                println!("{:<36} {:<16} {:<12} {:<8} {:<20}  GRANTS", "ID", "AGENT", "ENV", "STATUS", "EXPIRES");
                for v in &views {
                    println!(
                        "{:<36} {:<16} {:<12} {:<8} {:<20}  {}",
                        v.task.id,
                        v.task.agent,
                        v.task.environment,
                        v.status,
                        v.expires,
                        v.task.grants.join(" ")
                    );
                }
            }
        }
        TaskCmd::Show(a) => {
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let task = store.get_task(&a.id).await?.ok_or_else(|| Failure::from(airlock_token::Error::UnknownTask(a.id.clone())))?;
            let now = now_unix();
            let view = TaskView { task: &task, status: status(&task, now), expires: rfc3339(task.expires_at) };
            if a.json {
                print_json(&view);
            } else {
                let bold = |s: &str| if color() { format!("\x1b[1m{s}\x1b[0m") } else { s.to_owned() };
                println!("{} {}", bold("task"), task.id);
                println!("  agent:       {}", task.agent);
                println!("  environment: {}", task.environment);
                println!("  grants:      {}", task.grants.join(", "));
                println!("  purpose:     {}", task.purpose.as_deref().unwrap_or("-"));
                println!("  status:      {}", view.status);
                println!("  started:     {} by {}", rfc3339(task.created_at), task.created_by);
                println!("  expires:     {}", view.expires);
                if let Some(e) = task.ended_at {
                    println!("  ended:       {}", rfc3339(e));
                }
            }
        }
        TaskCmd::End(a) => {
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let ended = airlock_token::end_task(&*store, &a.id, &actor(), &a.reason).await?;
            if ended {
                println!("ended task {}; its tokens are revoked (every gateway refuses them within 0.5 s: gateways poll revocations every 250 ms)", a.id);
            } else {
                println!("task {} had already ended; its tokens stay revoked", a.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
