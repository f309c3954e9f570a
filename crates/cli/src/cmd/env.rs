//! `airlock env`: print the shell exports that point an agent's tools at the gateway.
//!
//! Per configured upstream with `env_vars`, the base-URL variable becomes the gateway URL
//! of that upstream and the key variable becomes the task token (a phantom credential,
//! worthless outside the gateway). With `[gateway] forward_proxy = true` it also prints
//! `HTTPS_PROXY` / `https_proxy` (the gateway) and the CA trust variables
//! (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `GIT_SSL_CAINFO`,
//! `AWS_CA_BUNDLE` → `ca-bundle.pem`; `NODE_EXTRA_CA_CERTS` → `ca.pem`). Never prints a
//! vault secret or the CA key's path.

use std::process::ExitCode;

use airlock_gateway::config::Config;
use airlock_token::{Claims, TokenAuthority};
use airlock_types::Grant;

use crate::app::{CmdResult, Ctx, Failure, actor, audit, now_unix, print_json, read_token_stdin};

#[derive(clap::Args, Debug)]
pub struct EnvArgs {
    /// Mint a fresh token for this running task (same agent, environment, grants and
    /// expiry). Without it, the task token is read from stdin.
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
    /// Print a JSON object instead of `export` lines.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, args: EnvArgs) -> CmdResult {
    let path = ctx.config_path()?.ok_or_else(|| Failure::usage("no gateway configuration found").hint("pass --config FILE or set AIRLOCK_CONFIG"))?;
    let config = Config::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
    let token = match &args.task {
        None => read_token_stdin()?,
        Some(id) => {
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let task = store.get_task(id).await?.ok_or_else(|| Failure::usage(format!("no task with id {id}")).hint("see `airlock task list`"))?;
            if task.ended_at.is_some() {
                return Err(Failure::usage(format!("task {id} has ended; start a new one with `airlock task start`")));
            }
            if task.expires_at <= now_unix() {
                return Err(Failure::usage(format!("task {id} has expired; start a new one with `airlock task start`")));
            }
            let grants: Vec<Grant> = task
                .grants
                .iter()
                .map(|g| g.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| Failure::internal(format!("task {id} has a malformed grant: {e}")))?;
            let authority = TokenAuthority::load(&state)?;
            let token = authority.mint(&Claims {
                task_id: &task.id,
                agent: &task.agent,
                environment: &task.environment,
                grants: &grants,
                purpose: task.purpose.as_deref(),
                expires_at: task.expires_at,
            })?;
            audit(&*store, "task.token", &task.id, "ok", Some(&task.id), serde_json::json!({ "by": actor(), "via": "airlock env" })).await?;
            token
        }
    };
    let mut exports = airlock_gateway::env::exports(&config, &token);
    if config.forward_proxy {
        let state = ctx.checked_state()?;
        let (cert, bundle) = airlock_gateway::ca::LocalCa::public_files(&state).map_err(|e| Failure::internal(e.to_string()))?;
        exports.extend(airlock_gateway::env::proxy_exports(&config, &cert, &bundle));
    }
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> = exports.into_iter().map(|(k, v)| (k, v.into())).collect();
        print_json(&map);
    } else {
        print!("{}", airlock_gateway::env::render(&exports));
    }
    Ok(ExitCode::SUCCESS)
}
