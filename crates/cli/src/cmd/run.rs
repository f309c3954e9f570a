//! `airlock run`: start an agent with no secrets in reach.
//!
//! Flags and dispatch only: the arguments become an [`airlock_run::orchestrate::Launch`],
//! the store, state directory, configuration and token key are opened here, and
//! [`Launch::run`] does the rest (checks, sandbox plan, scrub and preflight, gateway check,
//! task token, supervision, ending the task on every way out, audit records, closing
//! summary). Its errors become exit codes, kinds and hints in one place, [`failure`].
//!
//! airlock's own messages go to stderr (stdout is the agent's). Nothing here prints a
//! secret value: removed variables and findings are reported by name and place only.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use airlock_run::launch::{IsolationMode, Network};
use airlock_run::orchestrate::{Deps, Launch, LaunchError, Report};
use airlock_run::sandbox::Spec;
use airlock_run::supervise;
use airlock_token::TokenAuthority;
use airlock_types::Environment;

use crate::app::{CmdResult, Ctx, Failure, actor, exit, parse_duration, unknown_grant};
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
#[command(
    verbatim_doc_comment,
    after_help = "Examples:
  airlock upstream add anthropic --env staging --secret anthropic-staging   # once
  airlock serve &                                                          # the gateway must answer
  airlock run --env staging --grant anthropic:model -- claude
  airlock run --env staging --grant github:read --network none -- bash
  airlock run --env staging --grant github:read --allow-write ~/.cache/pip -- aider

Exit codes: the agent's own; 5 when the preflight finds readable secrets; 2 for bad flags.
What the sandbox blocks, with and without namespaces: docs/agents.md"
)]
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

/// airlock's messages on stderr, prefixed (stdout is the agent's).
struct Stderr;

impl Report for Stderr {
    fn say(&mut self, msg: &str) {
        eprintln!("airlock run: {msg}");
    }
    fn warn(&mut self, msg: &str) {
        eprintln!("airlock run: WARNING: {msg}");
    }
    fn list(&mut self, line: &str) {
        eprintln!("  {line}");
    }
}

pub async fn run(ctx: &Ctx, a: RunArgs) -> CmdResult {
    let launch = Launch {
        agent: a.agent,
        environment: a.env.parse::<Environment>().map_err(|e| Failure::usage(e.to_string()))?,
        grants: parse_grants(&a.grants)?,
        ttl: parse_duration(&a.ttl).map_err(|e| Failure::usage(format!("--ttl: {e}")))?,
        purpose: a.purpose,
        workspace: a.workspace,
        cwd: std::env::current_dir().map_err(|e| Failure::usage(format!("cannot read the current directory: {e}")))?,
        vars: std::env::vars_os().collect(),
        allow_read: a.allow_read,
        allow_write: a.allow_write,
        agent_home: a.agent_home,
        keep_env: a.keep_env,
        allow_findings: a.allow_findings,
        baseline: a.baseline,
        no_sandbox: a.no_sandbox,
        network: match a.network {
            NetworkArg::GatewayOnly => Network::GatewayOnly,
            NetworkArg::None => Network::None,
            NetworkArg::Open => Network::Open,
        },
        isolation: match a.isolation {
            IsolationArg::Auto => IsolationMode::Auto,
            IsolationArg::Namespaces => IsolationMode::Namespaces,
            IsolationArg::Landlock => IsolationMode::Landlock,
        },
        gateway: a.gateway,
        command: a.command,
    };
    let config = ctx.config()?;
    let state = ctx.checked_state()?;
    let exe = std::env::current_exe().map_err(|e| Failure::internal(format!("cannot locate the airlock binary: {e}")))?;
    let actor = actor();
    let deps = Deps {
        store: ctx.store(&state).await?,
        state: &state,
        config: config.as_ref(),
        authority: TokenAuthority::load(&state)?,
        max_ttl: ctx.max_ttl()?,
        actor: &actor,
        exe: &exe,
        detector: None,
    };
    let outcome = launch.run(deps, &mut Stderr).await.map_err(failure)?;
    Ok(ExitCode::from(outcome.exit.exit_code()))
}

/// Each way a launch fails, as its exit code, stable kind and hint.
fn failure(e: LaunchError) -> Failure {
    use LaunchError as E;
    let message = e.to_string();
    match e {
        E::UnknownGrant(g) => unknown_grant(*g),
        E::Sandbox(_) => Failure::new(exit::USAGE, "sandbox", message),
        E::ConfigWritable(_) => Failure::new(exit::USAGE, "config_writable", message),
        E::NoCommand | E::AgentName(_) | E::NoSandboxNeedsOpenNetwork | E::Workspace { .. } | E::WorkspaceNotADirectory(_) | E::Baseline { .. } => Failure::usage(message),
        E::Preflight { workspace, .. } => Failure::new(exit::PREFLIGHT, "preflight_findings", message).hint(format!(
            "move them into the vault with `airlock scan --fix --secret-env <ENV> {}` (ENV: the environment the credentials belong to; or drop the --keep-env), then run again; --allow-findings starts anyway (audited)",
            workspace.display()
        )),
        E::GatewayUnreachable { .. } => Failure::new(exit::FAILED, "gateway_unreachable", message).hint(
            "start it first with `airlock serve` (another terminal or a service; --config names its airlock.toml), or pass --gateway HOST:PORT; an agent that needs no upstream can run with --network none",
        ),
        E::LocalCa(_) => Failure::new(exit::FAILED, "local_ca", message),
        E::Store(e) => e.into(),
        E::Token(e) => e.into(),
        E::RevokeFailed { task_id, .. } => Failure::new(exit::FAILED, "revoke_failed", message)
            .hint(format!("run `airlock task end {task_id}` now; until then the token stays valid until it expires")),
        _ => Failure::internal(message),
    }
}
