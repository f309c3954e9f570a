//! `airlock serve`: run the gateway (agent-facing port + admin port) from airlock.toml.
//!
//! Wiring only: load and validate the configuration (refused inside a git work tree or a
//! world-writable directory, see `airlock_gateway::placement`), open the store, vault, token
//! verifier (with a revocation refresher), policy engine and group-commit audit, check
//! every upstream's secret against its environment, then serve until SIGINT/SIGTERM.
//! With `[gateway] forward_proxy = true` the agent-facing listener also accepts `CONNECT`
//! (forward-proxy mode), terminating TLS with leaves from the local airlock CA, which is
//! created on first use in the state directory (`ca.key` 0600, `ca.pem`, `ca-bundle.pem`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use airlock_gateway::Gateway;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::ca::LocalCa;
use airlock_gateway::config::Config;
use airlock_gateway::forward::ForwardProxy;
use airlock_gateway::server::{self, AdminState};
use airlock_policy::PolicyEngine;
use airlock_token::{Revocations, Verifier, VerifierOptions};

use crate::app::{CmdResult, Ctx, Failure, exit};

/// Revocations must have been refreshed this recently, or every token is refused.
const REVOCATION_MAX_STALENESS: Duration = Duration::from_secs(5);
/// How often revocations are pulled from the store (issue: effective within 1 s).
const REVOCATION_REFRESH: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Agent-facing address (overrides `[gateway] listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin address (overrides `[gateway] admin_listen`).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Validate the configuration, policies and secrets, then exit without serving.
    #[arg(long)]
    check: bool,
}

pub async fn run(ctx: &Ctx, args: ServeArgs) -> CmdResult {
    let path = ctx
        .config_path()?
        .ok_or_else(|| Failure::usage("no gateway configuration found").hint("pass --config FILE or set AIRLOCK_CONFIG (see airlock.example.toml)"))?;
    let config = Config::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
    // The rules must live where no agent can write: not in a git work tree, not directly
    // in a world-writable directory.
    airlock_gateway::placement::refuse_in_workspace(&config.rule_files()).map_err(|e| Failure::new(exit::USAGE, "config_in_workspace", e.to_string()))?;
    let listen = args.listen.unwrap_or(config.listen);
    let admin_listen = args.admin_listen.unwrap_or(config.admin_listen);
    if listen == admin_listen && listen.port() != 0 {
        return Err(Failure::usage("--listen and --admin-listen must differ: the agent-facing port never serves admin routes"));
    }

    let state = ctx.checked_state()?;
    let store = ctx.store(&state).await?;
    let vault = ctx.vault(&state, store.clone()).await?;
    let public = airlock_token::load_public_key(&state)?;
    let revocations = Revocations::with_max_staleness(REVOCATION_MAX_STALENESS);
    revocations.refresh(&*store).await.map_err(Failure::from)?;
    let refresher = revocations.spawn_refresher(store.clone(), REVOCATION_REFRESH);
    let verifier = Arc::new(Verifier::new(public, revocations, VerifierOptions::default()));
    let policy = PolicyEngine::from_config(&config.policy).map_err(|e| Failure::usage(e.to_string()))?;
    for id in policy.disabled() {
        tracing::warn!(policy = %id, "built-in policy disabled by configuration");
    }
    let (audit, writer) = GroupCommit::start(store.clone(), config.audit_batch);
    let stats = audit.stats();
    let audit = Arc::new(audit);
    let gateway = Gateway::new(&config, verifier.clone(), Arc::new(vault), Arc::new(policy), audit.clone())
        .map_err(|e| Failure::usage(e.to_string()))?
        .with_approvals(store.clone());
    // The admin credential guards the approval routes of the admin API.
    let admin_token = airlock_gateway::approvals::AdminToken::from_file_contents(&state.read_key(airlock_state::files::ADMIN_TOKEN)?);
    gateway.check_secrets().await.map_err(|e| Failure::usage(e.to_string()).hint("`airlock secret list` shows each secret's environment and upstream"))?;
    let approvals = gateway.approvals();
    let gateway = Arc::new(gateway);

    // Forward-proxy mode: the local CA (created on first use; its key never leaves the
    // state directory, which `airlock run` hides from agents).
    let mut ca_paths = None;
    let forward = if config.forward_proxy {
        let ca = LocalCa::load_or_create(&state)
            .map_err(|e| Failure::new(exit::FAILED, "local_ca", e.to_string()).hint("`airlock doctor` checks the state directory's permissions"))?;
        ca_paths =
            Some((ca.cert_path().map(|p| p.display().to_string()).unwrap_or_default(), ca.bundle_path().map(|p| p.display().to_string()).unwrap_or_default()));
        let fwd = ForwardProxy::new(&config, gateway.clone(), verifier, audit.clone(), Arc::new(ca)).map_err(|e| Failure::usage(e.to_string()))?;
        Some(fwd)
    } else {
        None
    };
    // The gateway and the forward proxy hold the audit sink now; when they are gone, the
    // writer drains and stops.
    drop(audit);
    if args.check {
        let fwd = if config.forward_proxy { ", forward proxy and local CA ready" } else { "" };
        println!("{}: ok ({} upstream(s), policies valid, secrets bound to matching environments{fwd})", path.display(), config.upstreams.len());
        return Ok(ExitCode::SUCCESS);
    }

    let admin = AdminState::new(&config, Some(stats)).with_approvals(approvals, admin_token).with_lookups(gateway.inventory_lookups());
    let running =
        server::start_with_forward(gateway, forward, listen, admin_listen, admin).await.map_err(|e| Failure::new(exit::FAILED, "bind", e.to_string()))?;
    eprintln!("airlock gateway: agents → http://{}  admin → http://{}", running.agent_addr, running.admin_addr);
    for u in &config.upstreams {
        eprintln!("  /{:<20} → {} ({})", u.name, u.base_url, u.environment);
    }
    if let Some((cert, bundle)) = &ca_paths {
        eprintln!(
            "  forward proxy: HTTPS_PROXY=http://{} (CONNECT); trust {cert} (CA) or {bundle} (CA + system roots); `airlock env` prints the variables",
            running.agent_addr
        );
        if !config.pass_through.is_empty() {
            let pt: Vec<String> = config.pass_through.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            eprintln!("  pass-through (blind tunnels, audited): {}", pt.join(", "));
        }
    }
    wait_for_signal().await;
    eprintln!("airlock gateway: shutting down (finishing in-flight requests)");
    running.shutdown().await;
    refresher.abort();
    // Dropping the last GroupCommit handle lets the writer drain and stop.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
