//! The `airlock` binary: argument parsing and wiring only.
//!
//! Every command lives in `cmd/`; each turns its arguments into calls on the
//! library crates and renders the result. Nothing here decides policy, handles
//! key material beyond passing it along, or prints a secret.

mod app;
mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// airlock — AI agents get access to real systems without ever holding a real secret.
///
/// Secrets live in an encrypted vault. Agents get short-lived task tokens bound
/// to one agent, one task, one environment and a set of grants. The gateway
/// swaps a task token for the real credential only when policy allows, and
/// every action is audited.
///
/// Start here:
///   airlock demo                         replay the incident, without and with airlock
///   airlock scan                         find every credential an agent could read here
///   airlock init                         create the state directory and keys
///   airlock secret add NAME --env staging --tier primary --upstream github < token.txt
///   airlock task start --agent coder --env staging --grant github:read --ttl 30m
///   airlock token verify < token         check a token exactly as the gateway will
///   airlock run --env staging --grant github:read -- <agent command>
///
/// Exit codes: 0 ok · 1 failed · 2 bad usage or input · 3 state directory missing
/// or unsafe · 4 token or key refused · 5 `airlock run` preflight found readable secrets.
/// `airlock scan` follows the scanner convention instead: 0 clean · 1 findings · 2 error.
/// `airlock run` otherwise exits with the agent's own exit code.
#[derive(Parser, Debug)]
#[command(name = "airlock", version, propagate_version = true, max_term_width = 100, verbatim_doc_comment)]
struct Cli {
    /// State directory (default: $AIRLOCK_HOME, else $XDG_DATA_HOME/airlock, else ~/.local/share/airlock).
    #[arg(long = "state-dir", global = true, env = "AIRLOCK_HOME", value_name = "DIR", hide_env_values = true)]
    home: Option<std::path::PathBuf>,
    /// Configuration file (default: $AIRLOCK_CONFIG, else <state dir>/airlock.toml, else
    /// /etc/airlock/airlock.toml; never ./airlock.toml, which an agent could rewrite).
    #[arg(long, global = true, env = "AIRLOCK_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the state directory, the vault master key and the token signing key.
    Init(cmd::init::InitArgs),
    /// Check the state directory, keys and database, and say what to fix.
    Doctor(cmd::init::DoctorArgs),
    /// Store, list, rotate and remove secrets in the vault (values never on the command line).
    #[command(subcommand)]
    Secret(cmd::secret::SecretCmd),
    /// Start, list, show and end tasks; starting one prints its task token.
    #[command(subcommand)]
    Task(cmd::task::TaskCmd),
    /// Inspect, verify and attenuate task tokens (tokens are read from stdin).
    #[command(subcommand)]
    Token(cmd::token::TokenCmd),
    /// Validate operator Cedar policies against airlock's schema.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCmd),
    /// Read and verify the audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCmd),
    /// Run the gateway: agents call it with task tokens; it injects real credentials only when policy allows.
    Serve(cmd::serve::ServeArgs),
    /// Print the shell exports an agent needs to reach upstreams through the gateway.
    Env(cmd::env::EnvArgs),
    /// Add a model API preset upstream (anthropic, openai) to airlock.toml; list upstreams.
    #[command(subcommand)]
    Upstream(cmd::upstream::UpstreamCmd),
    /// List approval requests for operations that wait for a human (via the admin API).
    #[command(subcommand)]
    Approvals(cmd::approvals::ApprovalsCmd),
    /// Approve a pending request (admin credential from the state directory; never a task token).
    Approve(cmd::approvals::ApproveArgs),
    /// Deny a pending request.
    Deny(cmd::approvals::DenyArgs),
    /// Replay the incident on loopback: an agent destroys production without airlock, and is stopped with it.
    Demo(cmd::demo::DemoArgs),
    /// Start an agent with nothing in reach: preflight scan (files and git history), scrubbed environment, task token, its own network/PID/mount namespaces with only the gateway reachable, Landlock and seccomp, revocation on exit.
    Run(cmd::run::RunArgs),
    /// Find every secret an agent could read (hidden and gitignored files, git history, environments, home); --fix moves them into the vault.
    ///
    /// Exit codes (scanner contract, unlike other commands): 0 clean · 1 findings · 2 error.
    Scan(cmd::scan::ScanArgs),
    /// Internal: the sandbox trampoline `airlock run` re-executes itself as.
    #[command(name = "__sandbox-exec", hide = true)]
    SandboxExec(cmd::run::SandboxExecArgs),
    /// Internal: the scripted agent `airlock demo` runs (with and without `airlock run`).
    #[command(name = "__demo-agent", hide = true)]
    DemoAgent(cmd::demo_agent::DemoAgentArgs),
}

fn main() -> ExitCode {
    app::harden_process();
    let cli = Cli::parse();
    // The sandbox trampoline enters namespaces, which needs a single-threaded process:
    // it runs before any runtime exists.
    let cli = match cli.command {
        Command::SandboxExec(a) => return cmd::run::sandbox_exec(a),
        command => Cli { command, ..cli },
    };
    app::init_tracing(cli.verbose);
    let ctx = app::Ctx::new(cli.home, cli.config);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return app::Failure::internal(format!("cannot start the async runtime: {e}")).report(),
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Init(a) => cmd::init::init(&ctx, a).await,
            Command::Doctor(a) => cmd::init::doctor(&ctx, a).await,
            Command::Secret(c) => cmd::secret::run(&ctx, c).await,
            Command::Task(c) => cmd::task::run(&ctx, c).await,
            Command::Token(c) => cmd::token::run(&ctx, c).await,
            Command::Policy(c) => cmd::policy::run(&ctx, c).await,
            Command::Audit(c) => cmd::audit::run(&ctx, c).await,
            Command::Serve(a) => cmd::serve::run(&ctx, a).await,
            Command::Env(a) => cmd::env::run(&ctx, a).await,
            Command::Upstream(c) => cmd::upstream::run(&ctx, c).await,
            Command::Approvals(c) => cmd::approvals::list(&ctx, c).await,
            Command::Approve(a) => cmd::approvals::approve(&ctx, a).await,
            Command::Deny(a) => cmd::approvals::deny(&ctx, a).await,
            Command::Demo(a) => cmd::demo::run(&ctx, a).await,
            Command::Run(a) => cmd::run::run(&ctx, a).await,
            Command::Scan(a) => cmd::scan::run(&ctx, a).await,
            Command::SandboxExec(_) => unreachable!("dispatched before the runtime starts"),
            Command::DemoAgent(a) => cmd::demo_agent::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}
