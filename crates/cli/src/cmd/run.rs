//! `airlock run`: start an agent with no secrets in reach.
//!
//! Wiring only: preflight scan → scrubbed environment → sandbox plan → task token →
//! spawn through the `__sandbox-exec` trampoline → supervise → end the task (revoking
//! its token) on every way out → closing summary from the audit log. The mechanisms
//! live in `airlock-run`; every decision is audited through the store.
//!
//! airlock's own messages go to stderr (stdout is the agent's). Nothing here prints a
//! secret value: removed variables and findings are reported by name and place only.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_run::launch::{self, IsolationMode, Network, Request};
use airlock_run::preflight::{Detector, Finding, Location};
use airlock_run::scan_detector::ScanDetector;
use airlock_run::sandbox::{self, Access, Spec};
use airlock_run::scrub::{self, Reason};
use airlock_run::supervise::{self, Signals};
use airlock_store::{AuditFilter, Store, TaskRecord};
use airlock_token::{Broker, StartTask, TokenAuthority};
use airlock_types::{Environment, Name};

use crate::app::{CmdResult, Ctx, Failure, actor, audit, exit, parse_duration};
use crate::cmd::task::parse_grants;

/// What `--network` allows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkArg {
    /// The gateway only: the agent has its own network namespace with the gateway relayed in
    /// (no other host, no UDP, no metadata address). The default.
    GatewayOnly,
    /// No network at all.
    None,
    /// Every host, directly (audited): the agent can call any API with whatever it finds.
    Open,
}

/// What `--isolation` builds the sandbox from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolationArg {
    /// Namespaces when the kernel allows them, else Landlock + seccomp with a warning.
    Auto,
    /// Namespaces or refuse to start.
    Namespaces,
    /// Landlock + seccomp only (no namespaces).
    Landlock,
}

#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    /// The agent's name (default: the command's file name).
    #[arg(long)]
    agent: Option<String>,
    /// The one environment the task may touch.
    #[arg(long)]
    env: String,
    /// UPSTREAM:CAPABILITY, repeatable (as for `airlock task start`).
    #[arg(long = "grant", value_name = "UPSTREAM:CAPABILITY", required = true)]
    grants: Vec<String>,
    /// Token lifetime (e.g. 30m, 2h); at most the configured cap.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Why the task exists (recorded in the audit log).
    #[arg(long)]
    purpose: Option<String>,
    /// The agent's workspace: scanned before start, read-write inside the sandbox (default: current directory).
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Also let the agent read and execute PATH (toolchains); a file under your home (~/.gitconfig) is copied into the agent home. Repeatable.
    #[arg(long = "allow-read", value_name = "PATH")]
    allow_read: Vec<PathBuf>,
    /// Also let the agent write DIR (tool caches such as ~/.cache/pip); refused for anything holding a credential store. Repeatable.
    #[arg(long = "allow-write", value_name = "DIR")]
    allow_write: Vec<PathBuf>,
    /// The agent's private, writable home (default: <state dir>/agents/<agent>/home, kept between runs).
    #[arg(long = "agent-home", value_name = "DIR")]
    agent_home: Option<PathBuf>,
    /// Pass this variable on although it looks like a credential (audited), repeatable.
    #[arg(long = "keep-env", value_name = "NAME")]
    keep_env: Vec<String>,
    /// Start even though the preflight scan found secrets the agent could read (audited).
    #[arg(long)]
    allow_findings: bool,
    /// Suppress preflight findings listed in this baseline (`airlock scan --write-baseline`).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Run without any sandbox (audited). Needed on kernels without Landlock.
    #[arg(long)]
    no_sandbox: bool,
    /// What the agent may reach: gateway-only (default), none, or open (audited).
    #[arg(long, value_enum, default_value = "gateway-only")]
    network: NetworkArg,
    /// How the sandbox is built: auto (default), namespaces, or landlock.
    #[arg(long, value_enum, default_value = "auto")]
    isolation: IsolationArg,
    /// The gateway address the agent talks to (default: the configured listen address, else 127.0.0.1:7700).
    #[arg(long, value_name = "HOST:PORT")]
    gateway: Option<String>,
    /// The agent command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The hidden trampoline: sandbox this process, then exec the agent.
#[derive(clap::Args, Debug)]
pub struct SandboxExecArgs {
    /// The supervisor's pid (the trampoline dies with it).
    #[arg(long)]
    supervisor: i32,
    /// The sandbox spec (JSON: paths and ports only).
    #[arg(long, required_unless_present_any = ["no_sandbox", "probe"])]
    spec: Option<String>,
    /// Exec without a sandbox (`airlock run --no-sandbox`).
    #[arg(long, conflicts_with = "spec")]
    no_sandbox: bool,
    /// Second stage: the first process of the agent's PID namespace.
    #[arg(long, requires = "spec", conflicts_with = "apply")]
    init: bool,
    /// Last stage: apply Landlock and seccomp, then exec the agent.
    #[arg(long, requires = "spec")]
    apply: bool,
    /// Only check that the namespaces can be entered, then exit.
    #[arg(long)]
    probe: bool,
    /// The agent command.
    #[arg(last = true, required_unless_present = "probe")]
    command: Vec<OsString>,
}

/// `airlock __sandbox-exec`: runs before any async runtime exists (namespaces need a
/// single-threaded process) and returns the exit code to leave with.
pub fn sandbox_exec(a: SandboxExecArgs) -> ExitCode {
    // `harden_process` made this process non-dumpable, which would make /proc/self/uid_map
    // root-owned and unwritable for an unprivileged user. The trampoline holds no secret
    // (paths and ports only), and the agent's own dumpability is reset by its exec anyway.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable);
    if a.probe {
        return match airlock_run::isolate::enter(true, true) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(supervise::EXIT_SANDBOX_FAILED)
            }
        };
    }
    let spec = match a.spec.as_deref().map(Spec::from_json).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("airlock run: {e}");
            return ExitCode::from(supervise::EXIT_SANDBOX_FAILED);
        }
    };
    let (code, err) = match (&spec, a.init, a.apply) {
        (Some(spec), true, _) => supervise::init(spec, &a.command),
        (Some(spec), _, true) => supervise::apply_and_exec(spec, a.supervisor, &a.command),
        _ => supervise::trampoline(spec.as_ref(), a.supervisor, &a.command),
    };
    if let Some(e) = err {
        eprintln!("airlock run: {e}");
    }
    ExitCode::from(code)
}

fn say(msg: impl AsRef<str>) {
    eprintln!("airlock run: {}", msg.as_ref());
}

/// The upstream variables for the granted upstreams, from airlock.toml (if any).
fn upstream_exports(config: Option<&airlock_gateway::config::Config>, granted: &[String], gateway_url: &str, token: &str) -> Vec<(String, String)> {
    let Some(config) = config else { return Vec::new() };
    let mut c = config.clone();
    c.upstreams.retain(|u| granted.iter().any(|g| g == u.name.as_str()));
    c.public_url = gateway_url.to_owned();
    airlock_gateway::env::exports(&c, token)
}

/// End the task (revoking its token), retrying briefly: SQLite answers `database is
/// locked` at once, without waiting, when the store's read-then-write transaction finds
/// that another process (a gateway writing audit records) committed in between. A token
/// must not stay valid because of that.
async fn end_task_retrying(store: &dyn Store, id: &str, reason: &str) -> Result<bool, airlock_token::Error> {
    let mut attempt = 0u32;
    loop {
        match airlock_token::end_task(store, id, &actor(), reason).await {
            Err(e) if attempt < 8 && !matches!(e, airlock_token::Error::UnknownTask(_)) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt.min(5))).await;
            }
            r => return r,
        }
    }
}

/// Copies of the public CA certificates (`ca.pem`, `ca-bundle.pem`, created with the CA if
/// needed) in a fresh directory outside the state directory, for the agent to trust.
fn proxy_ca_copies(state: &airlock_state::StateDir) -> Result<tempfile::TempDir, Failure> {
    use airlock_gateway::ca::{BUNDLE_FILE, CERT_FILE, LocalCa};
    let (cert, bundle) = LocalCa::public_files(state).map_err(|e| Failure::new(exit::FAILED, "local_ca", e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("airlock-ca-")
        .tempdir()
        .map_err(|e| Failure::internal(format!("cannot create a directory for the CA certificates: {e}")))?;
    for (from, name) in [(cert, CERT_FILE), (bundle, BUNDLE_FILE)] {
        std::fs::copy(&from, dir.path().join(name)).map_err(|e| Failure::internal(format!("cannot copy {}: {e}", from.display())))?;
    }
    Ok(dir)
}

fn print_findings(findings: &[Finding]) {
    for f in findings {
        eprintln!("  {:<40} {}", f.location.to_string(), f.detector);
    }
}

pub async fn run(ctx: &Ctx, a: RunArgs) -> CmdResult {
    let started = Instant::now();
    // ---- inputs (no side effects) ----
    let program_name = Path::new(&a.command[0]).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let agent_name = a.agent.clone().unwrap_or_else(|| if Name::parse("agent", &program_name).is_ok() { program_name.clone() } else { "agent".into() });
    let agent = Name::parse("agent", &agent_name).map_err(|e| Failure::usage(e.to_string()))?;
    let environment = a.env.parse::<Environment>().map_err(|e| Failure::usage(e.to_string()))?;
    let grants = parse_grants(&a.grants)?;
    let ttl = parse_duration(&a.ttl).map_err(|e| Failure::usage(format!("--ttl: {e}")))?;
    let network = match a.network {
        NetworkArg::GatewayOnly => Network::GatewayOnly,
        NetworkArg::None => Network::None,
        NetworkArg::Open => Network::Open,
    };
    if a.no_sandbox && network != Network::Open {
        return Err(Failure::usage("--no-sandbox cannot restrict the network: add --network open to say you mean it (both are audited)"));
    }
    let cwd = std::env::current_dir().map_err(|e| Failure::usage(format!("cannot read the current directory: {e}")))?;
    let workspace = a.workspace.clone().unwrap_or_else(|| cwd.clone());
    let workspace = std::fs::canonicalize(&workspace).map_err(|e| Failure::usage(format!("workspace {}: {e}", workspace.display())))?;
    if !workspace.is_dir() {
        return Err(Failure::usage(format!("workspace {} is not a directory", workspace.display())));
    }
    let config = ctx.config()?;
    // Grants must name configured upstreams and capabilities ("did you mean …").
    ctx.check_grants(&grants)?;
    let gateway_addr = match &a.gateway {
        Some(g) => g.clone(),
        None => config.as_ref().map(|c| c.listen.to_string()).unwrap_or_else(|| airlock_gateway::config::DEFAULT_LISTEN.to_owned()),
    };
    let state = ctx.checked_state()?;

    // ---- sandbox plan (validated before anything is scanned or started) ----
    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot locate the airlock binary: {e}")))?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut temp_dirs = vec![PathBuf::from("/tmp")];
    if let Some(t) = std::env::var_os("TMPDIR").filter(|t| !t.is_empty()) {
        temp_dirs.push(PathBuf::from(t));
    }
    let prepared = if a.no_sandbox {
        None
    } else {
        let req = Request {
            agent: agent.to_string(),
            workspace: workspace.clone(),
            cwd: if cwd.starts_with(&workspace) { cwd.clone() } else { workspace.clone() },
            command: a.command.clone(),
            path_var: std::env::var_os("PATH"),
            user_home: home.clone(),
            state: state.root().to_path_buf(),
            allow_read: a.allow_read.clone(),
            allow_write: a.allow_write.clone(),
            agent_home: a.agent_home.clone(),
            network,
            isolation: match a.isolation {
                IsolationArg::Auto => IsolationMode::Auto,
                IsolationArg::Namespaces => IsolationMode::Namespaces,
                IsolationArg::Landlock => IsolationMode::Landlock,
            },
            gateway_addr: gateway_addr.clone(),
            temp_dirs,
        };
        Some(launch::prepare(&req, &exe).map_err(|e| Failure::new(exit::USAGE, "sandbox", e.to_string()))?)
    };

    // The rules live where the agent cannot write: refuse a config or policy file inside
    // the workspace or any path the sandbox makes writable.
    if let (Some(c), Some(p)) = (&config, &prepared) {
        let writable: Vec<PathBuf> = p.spec.rules.iter().filter(|r| r.access == Access::ReadWrite).map(|r| r.path.clone()).collect();
        airlock_gateway::placement::refuse_in_writable(&c.rule_files(), &writable).map_err(|e| Failure::new(exit::USAGE, "config_writable", e.to_string()))?;
    }

    let store = ctx.store(&state).await?;

    // ---- scrubbed environment and preflight ----
    // The same engine and rules as `airlock scan`, so the `--fix` command printed on a
    // refusal cleans exactly what was refused.
    let mut detector = ScanDetector::new(&[]).map_err(|e| Failure::internal(e.to_string()))?;
    if let Some(b) = &a.baseline {
        detector = detector.with_baseline(b).map_err(|e| Failure::usage(format!("--baseline {}: {e}", b.display())))?;
    }
    let scrubbed = scrub::scrub(std::env::vars_os(), &a.keep_env, |n, v| detector.flag_value(n, v.as_encoded_bytes()));
    for name in &a.keep_env {
        if !scrubbed.kept.iter().any(|(k, _)| k == name.as_str()) {
            say(format!("--keep-env {name}: no such variable in the environment"));
        }
    }
    if !scrubbed.removed.is_empty() {
        let names: Vec<&str> = scrubbed.removed.iter().map(|r| r.name.as_str()).collect();
        say(format!("removed {} variable(s) from the agent's environment: {}", names.len(), names.join(", ")));
    }
    for k in &scrubbed.kept_deliberately {
        say(format!("keeping {} on request (--keep-env; it {})", k.name, k.reason));
        audit(&*store, "run.keep_env", &k.name, "kept", None, serde_json::json!({ "rule": k.reason.to_string(), "workspace": workspace })).await?;
    }
    let scan_started = Instant::now();
    let scan = detector.preflight(&workspace).map_err(|e| Failure::internal(e.to_string()))?;
    if !scan.listed.is_empty() {
        say(format!("preflight lists {} finding(s) that do not refuse the run:", scan.listed.len()));
        for l in scan.listed.iter().take(20) {
            eprintln!("  {:<40} {} ({})", l.finding.location.to_string(), l.finding.detector, l.reason);
        }
        if scan.listed.len() > 20 {
            eprintln!("  … and {} more (`airlock scan {}` lists them all)", scan.listed.len() - 20, workspace.display());
        }
    }
    if scan.baselined > 0 {
        say(format!("preflight: {} finding(s) suppressed by the baseline", scan.baselined));
    }
    let mut findings = scan.refused;
    // Deliberately kept variables are passed on: a flagged value is a finding.
    for k in &scrubbed.kept_deliberately {
        let value = scrubbed.kept.iter().find(|(n, _)| n == k.name.as_str()).map(|(_, v)| v.as_encoded_bytes());
        let flagged = match &k.reason {
            Reason::Value(d) => Some(d.clone()),
            _ => value.and_then(|v| detector.flag_value(&k.name, v)),
        };
        if let Some(d) = flagged {
            findings.push(Finding { location: Location::Env { name: k.name.clone() }, detector: d });
        }
    }
    let scan_ms = scan_started.elapsed().as_millis();
    let finding_detail = || {
        serde_json::json!({
            "workspace": workspace,
            "count": findings.len(),
            "findings": findings.iter().take(50).map(|f| serde_json::json!({ "at": f.location.to_string(), "detector": f.detector })).collect::<Vec<_>>(),
        })
    };
    if !findings.is_empty() {
        if !a.allow_findings {
            say(format!("preflight found {} secret(s) the agent could read:", findings.len()));
            print_findings(&findings);
            // Secrets in git history cannot be moved into the vault by `scan --fix`.
            let mut remedies: Vec<String> = findings.iter().filter_map(|f| f.location.remedy()).collect();
            remedies.dedup();
            for r in &remedies {
                say(format!("in git history: {r}"));
            }
            audit(&*store, "run.refused", &workspace.to_string_lossy(), "findings", None, finding_detail()).await?;
            return Err(Failure::new(
                exit::PREFLIGHT,
                "preflight_findings",
                format!("refusing to start the agent: {} secret(s) are readable in its workspace or environment", findings.len()),
            )
            .hint(format!(
                "move them into the vault with `airlock scan --fix --secret-env <ENV> {}` (ENV: the environment the credentials belong to; or drop the --keep-env), then run again; --allow-findings starts anyway (audited)",
                workspace.display()
            )));
        }
        say(format!("preflight found {} secret(s); starting anyway because of --allow-findings:", findings.len()));
        print_findings(&findings);
        audit(&*store, "run.allow_findings", &workspace.to_string_lossy(), "override", None, finding_detail()).await?;
    }

    // ---- the sandbox, as planned ----
    let mut spec = match &prepared {
        None => {
            say("WARNING: --no-sandbox: the agent can read every file you can (state directory, ~/.aws, ~/.ssh …) and reach every host");
            audit(&*store, "run.no_sandbox", &workspace.to_string_lossy(), "override", None, serde_json::json!({ "landlock_abi": sandbox::probe().abi })).await?;
            None
        }
        Some(p) => {
            for w in &p.warnings {
                say(format!("WARNING: {w}"));
            }
            for o in &p.opened {
                say(format!("opened {o}"));
            }
            for f in &p.filtered {
                say(format!("agent home: left out {f}"));
            }
            let rw: Vec<String> = p.spec.rules.iter().filter(|r| r.access == Access::ReadWrite).map(|r| r.path.display().to_string()).collect();
            say(format!(
                "sandbox: {} (Landlock ABI {}); read-write: {}; read-only: system paths{}; everything else is hidden; network: {}",
                p.isolation_used,
                p.spec.abi,
                rw.join(", "),
                if a.allow_read.is_empty() { String::new() } else { format!(" and {}", a.allow_read.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")) },
                match network {
                    Network::GatewayOnly => format!("the gateway only ({gateway_addr})"),
                    Network::None => "none".into(),
                    Network::Open => "open (every host)".into(),
                },
            ));
            say(format!("agent home: {}", p.agent_home.display()));
            Some(p.spec.clone())
        }
    };
    if network == Network::Open {
        say("WARNING: --network open: the agent can reach every host directly, including cloud APIs with any credential it finds");
        audit(&*store, "run.network_open", &workspace.to_string_lossy(), "override", None, serde_json::json!({ "sandbox": !a.no_sandbox })).await?;
    }

    // ---- the gateway must answer before the agent starts ----
    if network == Network::GatewayOnly
        && let Err(why) = launch::check_gateway(&gateway_addr, Duration::from_secs(2)).await
    {
        return Err(Failure::new(exit::FAILED, "gateway_unreachable", format!("the gateway at {gateway_addr} does not answer: {why}")).hint(
            "start it first with `airlock serve` (another terminal or a service; --config names its airlock.toml), or pass --gateway HOST:PORT; an agent that needs no upstream can run with --network none",
        ));
    }

    // ---- forward-proxy trust (`[gateway] forward_proxy`) ----
    // The agent gets HTTPS_PROXY and the CA trust variables. The certificates live in the
    // state directory, which stays unreadable: the agent reads copies in a directory of
    // its own (read-only in the sandbox). The CA key is never copied.
    let gateway_url = match (&prepared, &a.gateway, &config) {
        (Some(p), _, _) if p.spec.isolation.relay.is_some() => p.gateway_url.clone().unwrap_or_default(),
        (_, None, Some(c)) => c.public_url.trim_end_matches('/').to_owned(),
        _ => format!("http://{gateway_addr}"),
    };
    let proxy_ca = match config.as_ref().filter(|c| c.forward_proxy && network != Network::None) {
        None => None,
        Some(_) => {
            let dir = proxy_ca_copies(&state)?;
            if let Some(s) = spec.as_mut() {
                s.allow(std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_path_buf()), Access::ReadOnly);
            }
            say(format!("forward proxy: HTTPS_PROXY={gateway_url}; the agent trusts the airlock CA through copies in {} (read-only)", dir.path().display()));
            Some(dir)
        }
    };

    // ---- task token ----
    // Handlers first: from here on an interrupt must reach the supervisor, not kill airlock.
    let mut signals = Signals::install().map_err(|e| Failure::internal(e.to_string()))?;
    let req = StartTask { agent, environment, grants: grants.clone(), ttl, purpose: a.purpose.clone(), actor: actor() };
    let broker = Broker::new(store.clone(), TokenAuthority::load(&state)?, ctx.max_ttl()?);
    let (task, token) = broker.start_task(&req).await?;
    say(format!("started task {} for agent {} in {} (token in AIRLOCK_TOKEN)", task.id, task.agent, task.environment));

    // Everything after the task started ends in end_task, whatever happens.
    let mut env: Vec<(OsString, OsString)> = scrubbed.kept.clone();
    if let Some(p) = &prepared {
        for (k, v) in &p.env {
            env.retain(|(n, _)| n != k.as_str());
            env.push((k.into(), v.into()));
        }
    }
    let launch_ctx = LaunchCtx {
        store: &store,
        task: &task,
        token: &token,
        env,
        spec: spec.as_ref(),
        proxy_ca: proxy_ca.as_ref().map(|d| d.path()),
        config: config.as_ref(),
        gateway_url: (network != Network::None).then_some(gateway_url.as_str()),
        workspace: &workspace,
        cwd: &cwd,
        scan_ms,
        isolation: prepared.as_ref().map(|p| p.isolation_used),
        network,
    };
    let outcome = launch_agent(&a, launch_ctx, &mut signals).await;
    let reason = match &outcome {
        Ok(e) => format!("airlock run: agent {}", e.describe()),
        Err(f) => format!("airlock run: failed: {}", f.message),
    };
    let ended = end_task_retrying(&*store, &task.id, &reason).await;
    drop(prepared);
    drop(proxy_ca);
    let elapsed = started.elapsed();
    let summary = store
        .list_audit(&AuditFilter { task_id: Some(task.id.clone()), action_prefix: Some("gateway.".into()), ..Default::default() })
        .await
        .map(|e| (airlock_run::summary::summarize(&e), airlock_run::usage::grant_usage(&task.grants, &e)));
    if let Ok(e) = &outcome {
        audit(&*store, "run.end", &task.id, "ok", Some(&task.id), serde_json::json!({
            "exit_code": e.code, "signal": e.signal, "signals_received": e.received,
            "killed_after_grace": e.killed_after_grace, "duration_ms": elapsed.as_millis() as u64,
        }))
        .await
        .ok();
    }
    match ended {
        Ok(_) => {}
        Err(e) => {
            return Err(Failure::new(exit::FAILED, "revoke_failed", format!("could not end task {} to revoke its token: {e}", task.id))
                .hint(format!("run `airlock task end {}` now; until then the token stays valid until it expires", task.id)));
        }
    }
    let exit = outcome?;
    say(format!("agent {} after {:.1}s; task {} ended, its token is revoked", exit.describe(), elapsed.as_secs_f64(), task.id));
    match summary {
        Ok((s, usage)) => {
            if s.is_empty() {
                say("gateway requests: none");
            } else {
                say("gateway requests:");
                for (up, c) in &s {
                    eprintln!("  {up:<24} {} allowed, {} denied, {} awaiting approval", c.allowed, c.denied, c.awaiting_approval);
                }
            }
            // What the task was granted but did not need: the next run can ask for less.
            let unused: Vec<&str> = usage.grants.iter().filter(|g| g.unused()).map(|g| g.grant.as_str()).collect();
            if !unused.is_empty() {
                say(format!("granted but never used: {}", unused.join(", ")));
            }
            for g in usage.grants.iter().filter(|g| g.narrower.is_some()) {
                say(format!("{} was used only up to {}: {} would have done", g.grant, g.highest.as_deref().unwrap_or("?"), g.narrower.as_deref().unwrap_or("?")));
            }
        }
        Err(e) => say(format!("cannot read the audit log for the summary: {e}")),
    }
    if exit.exit_code() != 0 && spec.is_some() {
        say(launch::denied_hint(network, &[]));
    }
    Ok(ExitCode::from(exit.exit_code()))
}

/// What [`launch_agent`] needs besides the flags.
struct LaunchCtx<'a> {
    store: &'a Arc<dyn Store>,
    task: &'a TaskRecord,
    token: &'a str,
    env: Vec<(OsString, OsString)>,
    spec: Option<&'a Spec>,
    proxy_ca: Option<&'a Path>,
    config: Option<&'a airlock_gateway::config::Config>,
    gateway_url: Option<&'a str>,
    workspace: &'a Path,
    cwd: &'a Path,
    scan_ms: u128,
    isolation: Option<&'static str>,
    network: Network,
}

async fn launch_agent(a: &RunArgs, l: LaunchCtx<'_>, signals: &mut Signals) -> Result<supervise::Exit, Failure> {
    let granted: Vec<String> = l.task.grants.iter().filter_map(|g| g.split_once(':').map(|(u, _)| u.to_owned())).collect();
    let mut env = l.env;
    let mut set = |k: &str, v: &str| {
        env.retain(|(n, _)| n != k);
        env.push((k.into(), v.into()));
    };
    set("AIRLOCK_TOKEN", l.token);
    set("AIRLOCK_TASK_ID", &l.task.id);
    let mut exported = Vec::new();
    if let Some(gateway_url) = l.gateway_url {
        set("AIRLOCK_GATEWAY", gateway_url);
        let mut exports = upstream_exports(l.config, &granted, gateway_url, l.token);
        if let (Some(dir), Some(c)) = (l.proxy_ca, l.config) {
            let mut c = c.clone();
            c.public_url = gateway_url.to_owned();
            exports.extend(airlock_gateway::env::proxy_exports(&c, &dir.join(airlock_gateway::ca::CERT_FILE), &dir.join(airlock_gateway::ca::BUNDLE_FILE)));
        }
        exported = exports.iter().map(|(k, _)| k.clone()).collect();
        for (k, v) in &exports {
            set(k, v);
        }
    }

    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot locate the airlock binary: {e}")))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg(supervise::TRAMPOLINE_SUBCOMMAND).arg("--supervisor").arg(std::process::id().to_string());
    match l.spec {
        Some(s) => cmd.arg("--spec").arg(s.to_json()),
        None => cmd.arg("--no-sandbox"),
    };
    cmd.arg("--").args(&a.command).env_clear().envs(env).current_dir(if l.cwd.starts_with(l.workspace) { l.cwd } else { l.workspace });

    audit(&**l.store, "run.start", &l.task.id, "ok", Some(&l.task.id), serde_json::json!({
        "workspace": l.workspace,
        "program": Path::new(&a.command[0]).file_name().map(|s| s.to_string_lossy().into_owned()),
        "argc": a.command.len(),
        "sandbox": l.spec.map(|s| serde_json::json!({ "landlock_abi": s.abi, "rules": s.rules, "connect_tcp": s.connect_tcp, "isolation": s.isolation })),
        "isolation": l.isolation,
        "network": l.network,
        "env_exported": exported,
        "allow_read": a.allow_read,
        "allow_write": a.allow_write,
        "preflight_ms": l.scan_ms as u64,
    }))
    .await?;
    supervise::supervise(cmd, signals).await.map_err(|e| Failure::internal(e.to_string()))
}
