//! `airlock run` from its inputs to the agent's exit: the orchestration of the other modules.
//!
//! This module owns the order of a launch and what is audited on the way: the inputs and
//! grants are checked and the sandbox planned before anything is scanned; the environment
//! is scrubbed and the workspace scanned (a readable secret refuses the run); the sandbox is
//! announced and the gateway must answer before a task starts; then the task token is
//! minted, the agent spawned through the `__sandbox-exec` trampoline and supervised, and the
//! task ended (its token revoked) on every way out, followed by the closing summary from
//! the audit log.
//!
//! It never prints: what the user must know goes through [`Report`], failures come back as
//! [`LaunchError`] carrying data (the CLI turns each into its exit code, kind and hint), and
//! nothing here reports a secret value: variables and findings are named by name and place.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_gateway::config::Config;
use airlock_state::StateDir;
use airlock_store::{AuditFilter, Store, TaskRecord};
use airlock_token::{Broker, StartTask, TokenAuthority};
use airlock_types::{Environment, Grant, Name};

use crate::launch::{self, IsolationMode, Network, Prepared, Request};
use crate::preflight::{Detector, Finding, Location};
use crate::sandbox::{self, Access, Spec};
use crate::scan_detector::ScanDetector;
use crate::scrub::{self, Reason, Scrubbed};
use crate::summary::Summary;
use crate::supervise::{self, Exit, Signals};
use crate::usage::Usage;

/// How long the gateway has to answer before the agent starts.
const GATEWAY_CHECK: Duration = Duration::from_secs(2);

/// What one `airlock run` was asked to do: the flags, parsed, and the caller's process state.
#[derive(Clone)]
pub struct Launch {
    /// `--agent` (default: the command's file name, when that is a valid name, else `agent`).
    pub agent: Option<String>,
    /// `--env`: the one environment the task may touch.
    pub environment: Environment,
    /// `--grant`s.
    pub grants: Vec<Grant>,
    /// `--ttl`: the token's lifetime (capped by [`Deps::max_ttl`]).
    pub ttl: Duration,
    /// `--purpose` (audited).
    pub purpose: Option<String>,
    /// `--workspace` (default: [`Launch::cwd`]).
    pub workspace: Option<PathBuf>,
    /// The directory airlock was started in (the agent starts there when it is inside the workspace).
    pub cwd: PathBuf,
    /// The inherited environment, before scrubbing (`PATH`, `HOME` and `TMPDIR` are read from it too).
    pub vars: Vec<(OsString, OsString)>,
    /// `--allow-read`.
    pub allow_read: Vec<PathBuf>,
    /// `--allow-write`.
    pub allow_write: Vec<PathBuf>,
    /// `--agent-home` (default: `<state dir>/agents/<agent>/home`).
    pub agent_home: Option<PathBuf>,
    /// `--keep-env` names.
    pub keep_env: Vec<String>,
    /// `--allow-findings`.
    pub allow_findings: bool,
    /// `--baseline` (ignored when [`Deps::detector`] is given).
    pub baseline: Option<PathBuf>,
    /// `--no-sandbox` (needs [`Network::Open`]).
    pub no_sandbox: bool,
    /// `--network`.
    pub network: Network,
    /// `--isolation`.
    pub isolation: IsolationMode,
    /// `--gateway HOST:PORT` (default: the configured listen address, else 127.0.0.1:7700).
    pub gateway: Option<String>,
    /// The agent command and its arguments.
    pub command: Vec<OsString>,
}

impl std::fmt::Debug for Launch {
    // Hand-written so that a stray `{:?}` can never print an inherited variable's value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("agent", &self.agent)
            .field("environment", &self.environment)
            .field("grants", &self.grants)
            .field("workspace", &self.workspace)
            .field("vars", &self.vars.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("network", &self.network)
            .field("no_sandbox", &self.no_sandbox)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

/// What the caller has already opened for the launch.
pub struct Deps<'a> {
    /// The store: tasks, revocations, the audit log.
    pub store: Arc<dyn Store>,
    /// The (checked) state directory.
    pub state: &'a StateDir,
    /// The validated `airlock.toml`, if one was found.
    pub config: Option<&'a Config>,
    /// The key that mints the task token.
    pub authority: TokenAuthority,
    /// The longest lifetime a task may get (`[broker] max_ttl`).
    pub max_ttl: Duration,
    /// Who is acting, for audit records (`cli:<user>`).
    pub actor: &'a str,
    /// The airlock executable (the namespace probe and the trampoline run it).
    pub exe: &'a Path,
    /// The preflight detector; `None`: the `airlock scan` engine (so `scan --fix` cleans exactly what was refused).
    pub detector: Option<&'a dyn Detector>,
}

/// Where the launch tells the user what happens. Never given a secret value.
pub trait Report {
    /// A line of news (the CLI prints `airlock run: {msg}`).
    fn say(&mut self, msg: &str);
    /// Something the user must know is weaker or riskier than usual (`airlock run: WARNING: {msg}`).
    fn warn(&mut self, msg: &str);
    /// One item of the list the previous [`Report::say`] announced (printed indented).
    fn list(&mut self, line: &str);
}

/// The lines as the CLI would print them, without the `airlock run: ` prefix (for tests and embedders).
impl Report for Vec<String> {
    fn say(&mut self, msg: &str) {
        self.push(msg.to_owned());
    }
    fn warn(&mut self, msg: &str) {
        self.push(format!("WARNING: {msg}"));
    }
    fn list(&mut self, line: &str) {
        self.push(format!("  {line}"));
    }
}

/// How a launch that started the agent ended (its task is ended and its token revoked).
#[derive(Debug)]
pub struct Outcome {
    /// How the agent ended; [`Exit::exit_code`] is the code to leave with.
    pub exit: Exit,
    /// The task that was started and ended.
    pub task_id: String,
    /// From the start of [`Launch::run`] to the task's end.
    pub elapsed: Duration,
    /// The task's gateway requests per upstream (`None` when the audit log could not be read).
    pub summary: Option<Summary>,
    /// What the task used of its grants (`None` when the audit log could not be read).
    pub usage: Option<Usage>,
}

/// Why a launch did not run the agent to its end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// No agent command was given.
    #[error("no agent command: give it after `--`")]
    NoCommand,
    /// The agent's name (`--agent`, or the command's) is not a valid name.
    #[error("{0}")]
    AgentName(airlock_types::Error),
    /// `--no-sandbox` without `--network open`.
    #[error("--no-sandbox cannot restrict the network: add --network open to say you mean it (both are audited)")]
    NoSandboxNeedsOpenNetwork,
    /// The workspace cannot be resolved.
    #[error("workspace {}: {source}", path.display())]
    Workspace {
        /// The workspace as given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The workspace is not a directory.
    #[error("workspace {} is not a directory", .0.display())]
    WorkspaceNotADirectory(PathBuf),
    /// A grant names an upstream or capability the configuration does not define.
    #[error(transparent)]
    UnknownGrant(Box<airlock_gateway::grants::GrantError>),
    /// The sandbox cannot be planned as asked (a flag opens a credential store, no Landlock …).
    #[error(transparent)]
    Sandbox(crate::Error),
    /// A config or policy file lies where the agent could write it.
    #[error(transparent)]
    ConfigWritable(airlock_gateway::placement::PlacementError),
    /// `--baseline` cannot be read.
    #[error("--baseline {}: {source}", path.display())]
    Baseline {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::Error,
    },
    /// The preflight scan could not run.
    #[error(transparent)]
    Scan(crate::Error),
    /// The preflight found secrets the agent could read, and `--allow-findings` was not given.
    #[error("refusing to start the agent: {} secret(s) are readable in its workspace or environment", findings.len())]
    Preflight {
        /// What was found (places and detectors only).
        findings: Vec<Finding>,
        /// How to remove the ones in git history (`scan --fix` cannot).
        remedies: Vec<String>,
        /// The workspace scanned.
        workspace: PathBuf,
    },
    /// `--network gateway-only` and the gateway does not answer.
    #[error("the gateway at {addr} does not answer: {why}")]
    GatewayUnreachable {
        /// `HOST:PORT` tried.
        addr: String,
        /// What happened.
        why: String,
    },
    /// The local CA for the forward proxy cannot be loaded or created.
    #[error(transparent)]
    LocalCa(airlock_gateway::Error),
    /// No directory for the agent's copies of the CA certificates.
    #[error("cannot create a directory for the CA certificates: {0}")]
    CaDir(std::io::Error),
    /// A CA certificate cannot be copied for the agent.
    #[error("cannot copy {}: {source}", from.display())]
    CaCopy {
        /// The certificate.
        from: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signal handlers cannot be installed.
    #[error(transparent)]
    Signals(crate::Error),
    /// The store failed (an audit record, the summary).
    #[error(transparent)]
    Store(#[from] airlock_store::Error),
    /// The task could not be started (lifetime above the cap, key unusable …).
    #[error(transparent)]
    Token(airlock_token::Error),
    /// The agent could not be spawned or waited for.
    #[error(transparent)]
    Supervise(crate::Error),
    /// The task could not be ended: its token stays valid until it expires.
    #[error("could not end task {task_id} to revoke its token: {source}")]
    RevokeFailed {
        /// The task.
        task_id: String,
        /// Why.
        source: airlock_token::Error,
    },
}

/// What the checks found out: the agent's name, the canonical workspace, where it starts, the gateway.
struct Checked {
    agent: Name,
    workspace: PathBuf,
    start_dir: PathBuf,
    gateway_addr: String,
}

/// Audit records of the launch, by its actor.
struct Audit<'a> {
    store: &'a dyn Store,
    actor: &'a str,
}

impl Audit<'_> {
    async fn record(&self, action: &str, subject: &str, outcome: &str, task: Option<&str>, detail: serde_json::Value) -> Result<(), LaunchError> {
        self.store.append_audit(&airlock_token::audit_event(self.actor, action, subject, outcome, task, detail)).await?;
        Ok(())
    }
}

impl Launch {
    /// Run the agent: check, plan, scan, start the task, supervise, end the task, summarise.
    ///
    /// # Errors
    /// A [`LaunchError`] before the task started (nothing is left behind), or
    /// [`LaunchError::RevokeFailed`] / the spawn's error after it (the task is ended first).
    pub async fn run(self, deps: Deps<'_>, out: &mut dyn Report) -> Result<Outcome, LaunchError> {
        let started = Instant::now();
        let Deps { store, state, config, authority, max_ttl, actor, exe, detector } = deps;
        let audit = Audit { store: &*store, actor };

        // Before anything is scanned or started: the inputs, the grants, the sandbox plan, where the rules live.
        let checked = self.check(config, out)?;
        let prepared = self.plan(&checked, state, exe)?;
        refuse_writable_rules(config, prepared.as_ref())?;

        // What the agent could read: its environment (scrubbed) and its workspace (preflight).
        let scan_detector;
        let detector: &dyn Detector = match detector {
            Some(d) => d,
            None => {
                scan_detector = self.scan_detector(state)?;
                &scan_detector
            }
        };
        let scrubbed = self.scrub(detector, &checked, &audit, out).await?;
        let preflight_ms = self.preflight(detector, &scrubbed, &checked, &audit, out).await?;

        // The sandbox as planned, the gateway answering, the forward proxy's CA copies.
        let mut spec = self.announce_sandbox(prepared.as_ref(), &checked, &audit, out).await?;
        self.check_gateway(&checked).await?;
        let gateway_url = self.gateway_url(prepared.as_ref(), config, &checked);
        let proxy_ca = self.proxy_ca(config, state, spec.as_mut(), &gateway_url, out)?;

        // The task. Handlers first: from here an interrupt must reach the supervisor, not kill airlock.
        let mut signals = Signals::install().map_err(LaunchError::Signals)?;
        let req = StartTask {
            agent: checked.agent.clone(),
            environment: self.environment.clone(),
            grants: self.grants.clone(),
            ttl: self.ttl,
            purpose: self.purpose.clone(),
            actor: actor.to_owned(),
        };
        let (task, token) = Broker::new(store.clone(), authority, max_ttl).start_task(&req).await.map_err(LaunchError::Token)?;
        out.say(&format!("started task {} for agent {} in {} (token in AIRLOCK_TOKEN)", task.id, task.agent, task.environment));

        // Everything after the task started ends in end_task, whatever happens.
        let (env, exported) = agent_env(&AgentEnv {
            kept: &scrubbed.kept,
            sandbox: prepared.as_ref().map(|p| p.env.as_slice()).unwrap_or_default(),
            token: &token,
            task: &task,
            gateway_url: (self.network != Network::None).then_some(gateway_url.as_str()),
            config,
            proxy_ca: proxy_ca.as_ref().map(|d| d.path()),
        });
        let run = RunInfo { exe, spec: spec.as_ref(), isolation: prepared.as_ref().map(|p| p.isolation_used), exported, preflight_ms };
        let result = self.spawn_and_supervise(env, &checked, &task, &run, &audit, &mut signals).await;
        let reason = match &result {
            Ok(e) => format!("airlock run: agent {}", e.describe()),
            Err(e) => format!("airlock run: failed: {e}"),
        };
        let ended = end_task_retrying(|| airlock_token::end_task(&*store, &task.id, actor, &reason)).await;
        drop(prepared);
        drop(proxy_ca);
        let elapsed = started.elapsed();
        if let Ok(e) = &result {
            let detail = serde_json::json!({
                "exit_code": e.code, "signal": e.signal, "signals_received": e.received,
                "killed_after_grace": e.killed_after_grace, "duration_ms": elapsed.as_millis() as u64,
            });
            audit.record("run.end", &task.id, "ok", Some(&task.id), detail).await.ok();
        }
        ended.map_err(|source| LaunchError::RevokeFailed { task_id: task.id.clone(), source })?;
        let exit = result?;

        // The closing summary.
        out.say(&format!("agent {} after {:.1}s; task {} ended, its token is revoked", exit.describe(), elapsed.as_secs_f64(), task.id));
        let (summary, usage) = summarize(&*store, &task, out).await;
        if exit.exit_code() != 0 && spec.is_some() {
            out.say(&launch::denied_hint(self.network, &exit.denied));
        }
        Ok(Outcome { exit, task_id: task.id, elapsed, summary, usage })
    }

    /// The inputs, without side effects, and the grants against the configuration.
    fn check(&self, config: Option<&Config>, out: &mut dyn Report) -> Result<Checked, LaunchError> {
        let program = program_name(&self.command).ok_or(LaunchError::NoCommand)?;
        let name = self.agent.clone().unwrap_or_else(|| if Name::parse("agent", &program).is_ok() { program } else { "agent".into() });
        let agent = Name::parse("agent", &name).map_err(LaunchError::AgentName)?;
        if self.no_sandbox && self.network != Network::Open {
            return Err(LaunchError::NoSandboxNeedsOpenNetwork);
        }
        let given = self.workspace.clone().unwrap_or_else(|| self.cwd.clone());
        let workspace = std::fs::canonicalize(&given).map_err(|source| LaunchError::Workspace { path: given, source })?;
        if !workspace.is_dir() {
            return Err(LaunchError::WorkspaceNotADirectory(workspace));
        }
        // Grants must name configured upstreams and capabilities ("did you mean …").
        match config {
            Some(c) => c.check_grants(&self.grants).map_err(|e| LaunchError::UnknownGrant(Box::new(e)))?,
            None => out.warn(&format!(
                "no configuration found (--config, $AIRLOCK_CONFIG, <state dir>/airlock.toml, {}), so the grants are not checked against configured upstreams",
                airlock_gateway::placement::SYSTEM_CONFIG
            )),
        }
        let gateway_addr = match (&self.gateway, config) {
            (Some(g), _) => g.clone(),
            (None, Some(c)) => c.listen.to_string(),
            (None, None) => airlock_gateway::config::DEFAULT_LISTEN.to_owned(),
        };
        let start_dir = if self.cwd.starts_with(&workspace) { self.cwd.clone() } else { workspace.clone() };
        Ok(Checked { agent, workspace, start_dir, gateway_addr })
    }

    fn var(&self, name: &str) -> Option<OsString> {
        self.vars.iter().find(|(n, _)| n.as_os_str() == OsStr::new(name)).map(|(_, v)| v.clone())
    }

    /// The sandbox plan (`None` with `--no-sandbox`); nothing is started.
    fn plan(&self, c: &Checked, state: &StateDir, exe: &Path) -> Result<Option<Prepared>, LaunchError> {
        if self.no_sandbox {
            return Ok(None);
        }
        let mut temp_dirs = vec![PathBuf::from("/tmp")];
        if let Some(t) = self.var("TMPDIR").filter(|t| !t.is_empty()) {
            temp_dirs.push(PathBuf::from(t));
        }
        let req = Request {
            agent: c.agent.to_string(),
            workspace: c.workspace.clone(),
            cwd: c.start_dir.clone(),
            command: self.command.clone(),
            path_var: self.var("PATH"),
            user_home: self.var("HOME").map(PathBuf::from),
            state: state.root().to_path_buf(),
            allow_read: self.allow_read.clone(),
            allow_write: self.allow_write.clone(),
            agent_home: self.agent_home.clone(),
            network: self.network,
            isolation: self.isolation,
            gateway_addr: c.gateway_addr.clone(),
            temp_dirs,
        };
        launch::prepare(&req, exe).map(Some).map_err(LaunchError::Sandbox)
    }

    /// The same engine and rules as `airlock scan`, so the `--fix` command of a refusal cleans exactly what was refused.
    /// What it found clean before (blobs, commits, unchanged files) is remembered in the
    /// state directory, which the agent can neither read nor write.
    fn scan_detector(&self, state: &StateDir) -> Result<ScanDetector, LaunchError> {
        let detector = ScanDetector::new(&[]).map_err(LaunchError::Scan)?.with_cache(state.root());
        match &self.baseline {
            None => Ok(detector),
            Some(b) => detector.with_baseline(b).map_err(|source| LaunchError::Baseline { path: b.clone(), source }),
        }
    }

    /// The inherited environment minus what looks like a credential (by name or value); `--keep-env` is audited.
    async fn scrub(&self, detector: &dyn Detector, c: &Checked, audit: &Audit<'_>, out: &mut dyn Report) -> Result<Scrubbed, LaunchError> {
        let scrubbed = scrub::scrub(self.vars.iter().cloned(), &self.keep_env, |n, v| detector.flag_value(n, v.as_encoded_bytes()));
        for name in &self.keep_env {
            if !scrubbed.kept.iter().any(|(k, _)| k == name.as_str()) {
                out.say(&format!("--keep-env {name}: no such variable in the environment"));
            }
        }
        if !scrubbed.removed.is_empty() {
            let names: Vec<&str> = scrubbed.removed.iter().map(|r| r.name.as_str()).collect();
            out.say(&format!("removed {} variable(s) from the agent's environment: {}", names.len(), names.join(", ")));
        }
        for k in &scrubbed.kept_deliberately {
            out.say(&format!("keeping {} on request (--keep-env; it {})", k.name, k.reason));
            audit.record("run.keep_env", &k.name, "kept", None, serde_json::json!({ "rule": k.reason.to_string(), "workspace": c.workspace })).await?;
        }
        Ok(scrubbed)
    }

    /// The workspace scan and the deliberately kept variables: refuse (audited) on a finding unless
    /// `--allow-findings` (audited too). Returns how long the scan took, in milliseconds.
    async fn preflight(&self, detector: &dyn Detector, scrubbed: &Scrubbed, c: &Checked, audit: &Audit<'_>, out: &mut dyn Report) -> Result<u64, LaunchError> {
        let scan_started = Instant::now();
        let scan = detector.preflight(&c.workspace).map_err(LaunchError::Scan)?;
        if !scan.listed.is_empty() {
            out.say(&format!("preflight lists {} finding(s) that do not refuse the run:", scan.listed.len()));
            for l in scan.listed.iter().take(20) {
                out.list(&format!("{:<40} {} ({})", l.finding.location.to_string(), l.finding.detector, l.reason));
            }
            if scan.listed.len() > 20 {
                out.list(&format!("… and {} more (`airlock scan {}` lists them all)", scan.listed.len() - 20, c.workspace.display()));
            }
        }
        if scan.baselined > 0 {
            out.say(&format!("preflight: {} finding(s) suppressed by the baseline", scan.baselined));
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
        let preflight_ms = scan_started.elapsed().as_millis() as u64;
        if findings.is_empty() {
            return Ok(preflight_ms);
        }
        let subject = c.workspace.to_string_lossy();
        let detail = serde_json::json!({
            "workspace": c.workspace,
            "count": findings.len(),
            "findings": findings.iter().take(50).map(|f| serde_json::json!({ "at": f.location.to_string(), "detector": f.detector })).collect::<Vec<_>>(),
        });
        if self.allow_findings {
            out.say(&format!("preflight found {} secret(s); starting anyway because of --allow-findings:", findings.len()));
            list_findings(&findings, out);
            audit.record("run.allow_findings", &subject, "override", None, detail).await?;
            return Ok(preflight_ms);
        }
        out.say(&format!("preflight found {} secret(s) the agent could read:", findings.len()));
        list_findings(&findings, out);
        // Secrets in git history cannot be moved into the vault by `scan --fix`.
        let mut remedies: Vec<String> = findings.iter().filter_map(|f| f.location.remedy()).collect();
        remedies.dedup();
        for r in &remedies {
            out.say(&format!("in git history: {r}"));
        }
        audit.record("run.refused", &subject, "findings", None, detail).await?;
        Err(LaunchError::Preflight { findings, remedies, workspace: c.workspace.clone() })
    }

    /// Tell the user what the sandbox allows (or that there is none, audited) and audit an open network.
    async fn announce_sandbox(&self, prepared: Option<&Prepared>, c: &Checked, audit: &Audit<'_>, out: &mut dyn Report) -> Result<Option<Spec>, LaunchError> {
        let subject = c.workspace.to_string_lossy();
        let spec = match prepared {
            None => {
                out.warn("--no-sandbox: the agent can read every file you can (state directory, ~/.aws, ~/.ssh …) and reach every host");
                audit.record("run.no_sandbox", &subject, "override", None, serde_json::json!({ "landlock_abi": sandbox::probe().abi })).await?;
                None
            }
            Some(p) => {
                for w in &p.warnings {
                    out.warn(w);
                }
                for o in &p.opened {
                    out.say(&format!("opened {o}"));
                }
                for f in &p.filtered {
                    out.say(&format!("agent home: left out {f}"));
                }
                let rw: Vec<String> = p.spec.rules.iter().filter(|r| r.access == Access::ReadWrite).map(|r| r.path.display().to_string()).collect();
                let also_read = if self.allow_read.is_empty() {
                    String::new()
                } else {
                    format!(" and {}", self.allow_read.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
                };
                let network = match self.network {
                    Network::GatewayOnly => format!("the gateway only ({})", c.gateway_addr),
                    Network::None => "none".into(),
                    Network::Open => "open (every host)".into(),
                };
                out.say(&format!(
                    "sandbox: {} (Landlock ABI {}); read-write: {}; read-only: system paths{also_read}; everything else is hidden; network: {network}",
                    p.isolation_used,
                    p.spec.abi,
                    rw.join(", "),
                ));
                out.say(&format!("agent home: {}", p.agent_home.display()));
                Some(p.spec.clone())
            }
        };
        if self.network == Network::Open {
            out.warn("--network open: the agent can reach every host directly, including cloud APIs with any credential it finds");
            audit.record("run.network_open", &subject, "override", None, serde_json::json!({ "sandbox": !self.no_sandbox })).await?;
        }
        Ok(spec)
    }

    /// With `--network gateway-only` the gateway must answer before a task starts.
    async fn check_gateway(&self, c: &Checked) -> Result<(), LaunchError> {
        if self.network != Network::GatewayOnly {
            return Ok(());
        }
        launch::check_gateway(&c.gateway_addr, GATEWAY_CHECK).await.map_err(|why| LaunchError::GatewayUnreachable { addr: c.gateway_addr.clone(), why })
    }

    /// The gateway's URL as the agent reaches it: through the relay, else the configured public URL, else the address.
    fn gateway_url(&self, prepared: Option<&Prepared>, config: Option<&Config>, c: &Checked) -> String {
        match (prepared, &self.gateway, config) {
            (Some(p), _, _) if p.spec.isolation.relay.is_some() => p.gateway_url.clone().unwrap_or_default(),
            (_, None, Some(cfg)) => cfg.public_url.trim_end_matches('/').to_owned(),
            _ => format!("http://{}", c.gateway_addr),
        }
    }

    /// Forward-proxy trust (`[gateway] forward_proxy`): the agent gets HTTPS_PROXY and the CA trust
    /// variables. The certificates live in the state directory, which stays unreadable: the agent
    /// reads copies in a directory of its own (read-only in the sandbox). The CA key is never copied.
    fn proxy_ca(
        &self,
        config: Option<&Config>,
        state: &StateDir,
        spec: Option<&mut Spec>,
        gateway_url: &str,
        out: &mut dyn Report,
    ) -> Result<Option<tempfile::TempDir>, LaunchError> {
        if !config.is_some_and(|c| c.forward_proxy) || self.network == Network::None {
            return Ok(None);
        }
        let dir = proxy_ca_copies(state)?;
        if let Some(s) = spec {
            s.allow(std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_path_buf()), Access::ReadOnly);
        }
        out.say(&format!("forward proxy: HTTPS_PROXY={gateway_url}; the agent trusts the airlock CA through copies in {} (read-only)", dir.path().display()));
        Ok(Some(dir))
    }

    /// Spawn the agent through the trampoline (audited as `run.start`) and supervise it to its end.
    async fn spawn_and_supervise(
        &self,
        env: Vec<(OsString, OsString)>,
        c: &Checked,
        task: &TaskRecord,
        run: &RunInfo<'_>,
        audit: &Audit<'_>,
        signals: &mut Signals,
    ) -> Result<Exit, LaunchError> {
        let mut cmd = tokio::process::Command::new(run.exe);
        cmd.arg(supervise::TRAMPOLINE_SUBCOMMAND).arg("--supervisor").arg(std::process::id().to_string());
        match run.spec {
            Some(s) => cmd.arg("--spec").arg(s.to_json()),
            None => cmd.arg("--no-sandbox"),
        };
        cmd.arg("--").args(&self.command).env_clear().envs(env).current_dir(&c.start_dir);
        audit
            .record("run.start", &task.id, "ok", Some(&task.id), serde_json::json!({
                "workspace": c.workspace,
                "program": self.command.first().and_then(|p| Path::new(p).file_name()).map(|s| s.to_string_lossy().into_owned()),
                "argc": self.command.len(),
                "sandbox": run.spec.map(|s| serde_json::json!({ "landlock_abi": s.abi, "rules": s.rules, "connect_tcp": s.connect_tcp, "isolation": s.isolation })),
                "isolation": run.isolation,
                "network": self.network,
                "env_exported": run.exported,
                "allow_read": self.allow_read,
                "allow_write": self.allow_write,
                "preflight_ms": run.preflight_ms,
            }))
            .await?;
        supervise::supervise(cmd, signals).await.map_err(LaunchError::Supervise)
    }
}

/// What spawning needs besides the flags, and what the `run.start` record says about the launch.
struct RunInfo<'a> {
    exe: &'a Path,
    spec: Option<&'a Spec>,
    isolation: Option<&'static str>,
    exported: Vec<String>,
    preflight_ms: u64,
}

/// The file name of the agent's program, `None` without a command.
fn program_name(command: &[OsString]) -> Option<String> {
    let first = command.first()?;
    Some(Path::new(first).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
}

fn list_findings(findings: &[Finding], out: &mut dyn Report) {
    for f in findings {
        out.list(&format!("{:<40} {}", f.location.to_string(), f.detector));
    }
}

/// The rules live where the agent cannot write: refuse a config or policy file inside the
/// workspace or any path the sandbox makes writable. A private `/tmp` or `/dev/shm` (a fresh
/// tmpfs in the agent's mount namespace) is not the real one: only the rule paths beneath it
/// are bind-mounted back, and those stay in the list.
fn refuse_writable_rules(config: Option<&Config>, prepared: Option<&Prepared>) -> Result<(), LaunchError> {
    let (Some(c), Some(p)) = (config, prepared) else { return Ok(()) };
    let fresh = |path: &Path| p.spec.isolation.private_tmp && sandbox::FRESH_MOUNTS.iter().any(|m| path == Path::new(m));
    let writable: Vec<PathBuf> = p.spec.rules.iter().filter(|r| r.access == Access::ReadWrite && !fresh(&r.path)).map(|r| r.path.clone()).collect();
    airlock_gateway::placement::refuse_in_writable(&c.rule_files(), &writable).map_err(LaunchError::ConfigWritable)
}

/// Copies of the public CA certificates (`ca.pem`, `ca-bundle.pem`, created with the CA if
/// needed) in a fresh directory outside the state directory, for the agent to trust.
fn proxy_ca_copies(state: &StateDir) -> Result<tempfile::TempDir, LaunchError> {
    use airlock_gateway::ca::{BUNDLE_FILE, CERT_FILE, LocalCa};
    let (cert, bundle) = LocalCa::public_files(state).map_err(LaunchError::LocalCa)?;
    let dir = tempfile::Builder::new().prefix("airlock-ca-").tempdir().map_err(LaunchError::CaDir)?;
    for (from, name) in [(cert, CERT_FILE), (bundle, BUNDLE_FILE)] {
        std::fs::copy(&from, dir.path().join(name)).map_err(|source| LaunchError::CaCopy { from, source })?;
    }
    Ok(dir)
}

/// What the agent's environment is made of.
struct AgentEnv<'a> {
    /// The scrubbed inherited environment.
    kept: &'a [(OsString, OsString)],
    /// The sandbox's variables (home, temp dir).
    sandbox: &'a [(String, String)],
    token: &'a str,
    task: &'a TaskRecord,
    /// The gateway as the agent reaches it; `None` without a network.
    gateway_url: Option<&'a str>,
    config: Option<&'a Config>,
    /// The directory with the agent's copies of the CA certificates (forward proxy).
    proxy_ca: Option<&'a Path>,
}

/// The agent's environment, in order: the scrubbed one, the sandbox's variables, the task
/// token and id, and with a network the gateway and the variables of the granted upstreams
/// (their base URLs at the gateway, the task token as their key) and the forward proxy's.
/// Also returns the names exported for the upstreams and the proxy (audited).
fn agent_env(e: &AgentEnv<'_>) -> (Vec<(OsString, OsString)>, Vec<String>) {
    let mut env: Vec<(OsString, OsString)> = e.kept.to_vec();
    let mut set = |k: &str, v: &str| {
        env.retain(|(n, _)| n != k);
        env.push((k.into(), v.into()));
    };
    for (k, v) in e.sandbox {
        set(k, v);
    }
    set("AIRLOCK_TOKEN", e.token);
    set("AIRLOCK_TASK_ID", &e.task.id);
    let mut exported = Vec::new();
    if let Some(gateway_url) = e.gateway_url {
        set("AIRLOCK_GATEWAY", gateway_url);
        let granted: Vec<&str> = e.task.grants.iter().filter_map(|g| g.split_once(':').map(|(u, _)| u)).collect();
        let mut exports = Vec::new();
        if let Some(config) = e.config {
            let mut c = config.clone();
            c.upstreams.retain(|u| granted.contains(&u.name.as_str()));
            c.public_url = gateway_url.to_owned();
            exports = airlock_gateway::env::exports(&c, e.token);
            if let Some(dir) = e.proxy_ca {
                use airlock_gateway::ca::{BUNDLE_FILE, CERT_FILE};
                exports.extend(airlock_gateway::env::proxy_exports(&c, &dir.join(CERT_FILE), &dir.join(BUNDLE_FILE)));
            }
        }
        exported = exports.iter().map(|(k, _)| k.clone()).collect();
        for (k, v) in &exports {
            set(k, v);
        }
    }
    (env, exported)
}

/// End the task (revoking its token), retrying briefly: SQLite answers `database is
/// locked` at once, without waiting, when the store's read-then-write transaction finds
/// that another process (a gateway writing audit records) committed in between. A token
/// must not stay valid because of that. An unknown task is not retried.
async fn end_task_retrying<F, Fut>(mut end_task: F) -> Result<bool, airlock_token::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, airlock_token::Error>>,
{
    let mut attempt = 0u32;
    loop {
        match end_task().await {
            Err(e) if attempt < 8 && !matches!(e, airlock_token::Error::UnknownTask(_)) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 << attempt.min(5))).await;
            }
            r => return r,
        }
    }
}

/// The closing summary from the audit log: requests per upstream, and grants the next run could drop or narrow.
async fn summarize(store: &dyn Store, task: &TaskRecord, out: &mut dyn Report) -> (Option<Summary>, Option<Usage>) {
    let filter = AuditFilter { task_id: Some(task.id.clone()), action_prefix: Some("gateway.".into()), ..Default::default() };
    let entries = match store.list_audit(&filter).await {
        Ok(e) => e,
        Err(e) => {
            out.say(&format!("cannot read the audit log for the summary: {e}"));
            return (None, None);
        }
    };
    let (summary, usage) = (crate::summary::summarize(&entries), crate::usage::grant_usage(&task.grants, &entries));
    if summary.is_empty() {
        out.say("gateway requests: none");
    } else {
        out.say("gateway requests:");
        for (up, c) in &summary {
            out.list(&format!("{up:<24} {} allowed, {} denied, {} awaiting approval", c.allowed, c.denied, c.awaiting_approval));
        }
    }
    // What the task was granted but did not need: the next run can ask for less.
    let unused: Vec<&str> = usage.grants.iter().filter(|g| g.unused()).map(|g| g.grant.as_str()).collect();
    if !unused.is_empty() {
        out.say(&format!("granted but never used: {}", unused.join(", ")));
    }
    for g in usage.grants.iter().filter(|g| g.narrower.is_some()) {
        out.say(&format!("{} was used only up to {}: {} would have done", g.grant, g.highest.as_deref().unwrap_or("?"), g.narrower.as_deref().unwrap_or("?")));
    }
    (Some(summary), Some(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    use crate::preflight::WorkspaceScan;

    const SECRET: &str = "sekrit-value-0123456789";

    /// Refuses what it is given and flags one value.
    struct FakeDetector {
        refused: Vec<Finding>,
    }

    impl Detector for FakeDetector {
        fn scan_workspace(&self, _root: &Path) -> Result<Vec<Finding>, crate::Error> {
            Ok(self.refused.clone())
        }
        fn preflight(&self, root: &Path) -> Result<WorkspaceScan, crate::Error> {
            Ok(WorkspaceScan { refused: self.scan_workspace(root)?, ..WorkspaceScan::default() })
        }
        fn flag_value(&self, _name: &str, value: &[u8]) -> Option<String> {
            (value == SECRET.as_bytes()).then(|| "fake-detector".to_owned())
        }
    }

    struct Fixture {
        dir: tempfile::TempDir,
        state: StateDir,
        store: Arc<dyn Store>,
    }

    impl Fixture {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let state = StateDir::at(dir.path().join("state")).unwrap();
            state.create().unwrap();
            let store: Arc<dyn Store> = Arc::new(airlock_store::SqliteStore::open(&state.path(airlock_state::files::DATABASE)).await.unwrap());
            for d in ["work", "home"] {
                std::fs::create_dir(dir.path().join(d)).unwrap();
            }
            Self { dir, state, store }
        }

        fn launch(&self) -> Launch {
            let home = self.dir.path().join("home");
            Launch {
                agent: None,
                environment: "staging".parse().unwrap(),
                grants: vec!["github:read".parse().unwrap()],
                ttl: Duration::from_secs(600),
                purpose: None,
                workspace: None,
                cwd: self.dir.path().join("work"),
                vars: vec![("PATH".into(), "/usr/bin:/bin".into()), ("HOME".into(), home.into_os_string())],
                allow_read: vec![],
                allow_write: vec![],
                agent_home: None,
                keep_env: vec![],
                allow_findings: false,
                baseline: None,
                no_sandbox: false,
                network: Network::GatewayOnly,
                isolation: IsolationMode::Landlock,
                gateway: None,
                command: vec!["/bin/true".into()],
            }
        }

        fn deps<'a>(&'a self, detector: &'a dyn Detector) -> Deps<'a> {
            Deps {
                store: self.store.clone(),
                state: &self.state,
                config: None,
                authority: TokenAuthority::ephemeral(),
                max_ttl: Duration::from_secs(3600),
                actor: "test:orchestrate",
                exe: Path::new("/bin/false"),
                detector: Some(detector),
            }
        }

        async fn actions(&self) -> Vec<String> {
            self.store.list_audit(&AuditFilter::default()).await.unwrap().into_iter().map(|e| e.event.action).collect()
        }

        async fn tasks(&self) -> usize {
            self.store.list_tasks().await.unwrap().len()
        }
    }

    #[tokio::test]
    async fn inputs_are_checked_before_anything_happens() {
        let f = Fixture::new().await;
        let none = FakeDetector { refused: vec![] };
        let mut out = Vec::new();
        let l = Launch { no_sandbox: true, ..f.launch() };
        let e = l.run(f.deps(&none), &mut out).await.unwrap_err();
        assert!(matches!(e, LaunchError::NoSandboxNeedsOpenNetwork) && e.to_string().contains("--network open"), "{e}");
        let l = Launch { workspace: Some(f.dir.path().join("missing")), ..f.launch() };
        assert!(matches!(l.run(f.deps(&none), &mut out).await.unwrap_err(), LaunchError::Workspace { .. }));
        let l = Launch { agent: Some("no spaces allowed".into()), ..f.launch() };
        assert!(matches!(l.run(f.deps(&none), &mut out).await.unwrap_err(), LaunchError::AgentName(_)));
        let l = Launch { command: vec![], ..f.launch() };
        assert!(matches!(l.run(f.deps(&none), &mut out).await.unwrap_err(), LaunchError::NoCommand));
        assert!(f.actions().await.is_empty() && f.tasks().await == 0);

        // The agent is named after its program; without a config the grants go unchecked, with a warning.
        let c = Launch { command: vec!["/usr/local/bin/claude".into(), "--help".into()], ..f.launch() }.check(None, &mut out).unwrap();
        assert_eq!((c.agent.as_str(), c.gateway_addr.as_str()), ("claude", airlock_gateway::config::DEFAULT_LISTEN));
        assert_eq!(c.workspace, std::fs::canonicalize(f.dir.path().join("work")).unwrap());
        assert!(out.iter().any(|l| l.starts_with("WARNING: no configuration found") && l.contains("not checked")), "{out:?}");
    }

    #[tokio::test]
    async fn grants_must_name_configured_upstreams() {
        let f = Fixture::new().await;
        let config = Config::parse(GITHUB, Path::new("airlock.toml")).unwrap();
        let l = Launch { grants: vec!["githb:read".parse().unwrap()], ..f.launch() };
        let e = l.check(Some(&config), &mut Vec::new()).err().unwrap();
        let LaunchError::UnknownGrant(g) = e else { panic!("{e}") };
        assert_eq!(g.suggested_grant().as_deref(), Some("github:read"));
    }

    #[tokio::test]
    async fn preflight_refuses_naming_places_audits_and_starts_no_task() {
        let f = Fixture::new().await;
        let detector = FakeDetector { refused: vec![Finding { location: Location::File { path: ".env".into(), line: 2 }, detector: "dotenv".into() }] };
        let mut l = Launch { no_sandbox: true, network: Network::Open, keep_env: vec!["KEPT_TOKEN".into(), "ABSENT".into()], ..f.launch() };
        l.vars.extend([("FLAGGED".into(), SECRET.into()), ("KEPT_TOKEN".into(), SECRET.into()), ("GITHUB_TOKEN".into(), "ghp_x".into())]);
        let mut out = Vec::new();
        let e = l.run(f.deps(&detector), &mut out).await.unwrap_err();
        let LaunchError::Preflight { findings, remedies, workspace } = &e else { panic!("{e}") };
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[1].location, Location::Env { name: "KEPT_TOKEN".into() });
        assert!(remedies.is_empty() && workspace.ends_with("work"));
        assert!(e.to_string().contains("2 secret(s)"), "{e}");
        let text = out.join("\n");
        assert!(text.contains("removed 2 variable(s) from the agent's environment: FLAGGED, GITHUB_TOKEN"), "{text}");
        assert!(text.contains("--keep-env ABSENT: no such variable") && text.contains("keeping KEPT_TOKEN on request"), "{text}");
        assert!(text.contains(".env:2") && text.contains("environment variable KEPT_TOKEN"), "{text}");
        assert!(!text.contains(SECRET) && !text.contains("ghp_x"), "{text}");
        // Refused before the sandbox was announced (no run.no_sandbox) and before any task.
        assert_eq!(f.actions().await, ["run.keep_env", "run.refused"]);
        assert_eq!(f.tasks().await, 0);
    }

    #[tokio::test]
    async fn an_unreachable_gateway_starts_no_task() {
        if sandbox::probe().abi.is_none_or(|abi| abi < 4) {
            eprintln!("skipped: gateway-only without namespaces needs Landlock ABI 4");
            return;
        }
        let f = Fixture::new().await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let none = FakeDetector { refused: vec![] };
        let l = Launch { gateway: Some(closed.clone()), ..f.launch() };
        let mut out = Vec::new();
        let e = l.run(f.deps(&none), &mut out).await.unwrap_err();
        let LaunchError::GatewayUnreachable { addr, why } = &e else { panic!("{e}: {out:?}") };
        assert_eq!(addr, &closed);
        assert!(!why.is_empty());
        assert!(out.iter().any(|l| l.starts_with("sandbox: landlock, seccomp") && l.contains(&format!("the gateway only ({closed})"))), "{out:?}");
        assert_eq!(f.tasks().await, 0);
        assert!(f.actions().await.iter().all(|a| !a.starts_with("task.")), "{:?}", f.actions().await);
    }

    const GITHUB: &str = r#"
[gateway]
public_url = "http://127.0.0.1:7700"
[[upstream]]
name = "github"
base_url = "https://api.github.com"
environment = "staging"
secret = "gh"
inject = { header = "Authorization", format = "token {secret}" }
env_vars = { base_url = "GITHUB_API_URL", key = "GH_TOKEN" }
[[upstream]]
name = "openai"
base_url = "https://api.openai.com/v1"
environment = "staging"
secret = "openai-key"
inject = { header = "Authorization", format = "Bearer {secret}" }
env_vars = { base_url = "OPENAI_BASE_URL", key = "OPENAI_API_KEY" }
"#;

    #[test]
    fn the_agent_gets_the_task_token_and_granted_upstreams_never_a_scrubbed_value() {
        let config = Config::parse(GITHUB, Path::new("airlock.toml")).unwrap();
        let inherited: Vec<(OsString, OsString)> =
            [("PATH", "/usr/bin"), ("HOME", "/home/u"), ("OPENAI_API_KEY", "sk-real-key"), ("GH_TOKEN", "ghp_real"), ("AIRLOCK_TOKEN", "stale")]
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect();
        let scrubbed = scrub::scrub(inherited, &[], |_, _| None);
        let task = TaskRecord {
            id: "task-1".into(),
            agent: "claude".into(),
            environment: "staging".into(),
            grants: vec!["openai:model".into()],
            purpose: None,
            created_at: 0,
            expires_at: 60,
            ended_at: None,
            created_by: "test".into(),
        };
        let sandbox = [("HOME".to_owned(), "/state/agents/claude/home".to_owned())];
        let inputs = AgentEnv {
            kept: &scrubbed.kept,
            sandbox: &sandbox,
            token: "tok",
            task: &task,
            gateway_url: Some("http://127.0.0.1:9"),
            config: Some(&config),
            proxy_ca: None,
        };
        let (env, exported) = agent_env(&inputs);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get("AIRLOCK_TOKEN"), Some("tok"));
        assert_eq!(get("AIRLOCK_TASK_ID"), Some("task-1"));
        assert_eq!(get("AIRLOCK_GATEWAY"), Some("http://127.0.0.1:9"));
        assert_eq!(get("OPENAI_BASE_URL"), Some("http://127.0.0.1:9/openai"));
        assert_eq!(get("OPENAI_API_KEY"), Some("tok"));
        assert_eq!(get("HOME"), Some("/state/agents/claude/home"));
        assert_eq!(get("PATH"), Some("/usr/bin"));
        // Not granted: github's variables are not set, and its scrubbed key does not come back.
        assert_eq!((get("GH_TOKEN"), get("GITHUB_API_URL")), (None, None));
        assert!(env.iter().all(|(_, v)| v != "sk-real-key" && v != "ghp_real" && v != "stale"), "{:?}", env.iter().map(|(k, _)| k).collect::<Vec<_>>());
        assert_eq!(env.iter().filter(|(n, _)| n == "AIRLOCK_TOKEN").count(), 1);
        assert_eq!(exported, ["OPENAI_BASE_URL", "OPENAI_API_KEY", "AIRLOCK_GATEWAY_URL"]);

        // Without a network: the token and task id only.
        let (env, exported) = agent_env(&AgentEnv { gateway_url: None, ..inputs });
        assert!(exported.is_empty());
        assert!(env.iter().all(|(n, _)| n != "AIRLOCK_GATEWAY" && n != "OPENAI_API_KEY"));
    }

    #[tokio::test]
    async fn ending_the_task_retries_transient_failures_but_not_an_unknown_task() {
        let calls = AtomicU32::new(0);
        let flaky = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 { Err(airlock_token::Error::Key("database is locked".into())) } else { Ok(true) }
        };
        assert!(end_task_retrying(flaky).await.unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let unknown = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(airlock_token::Error::UnknownTask("t".into()))
        };
        assert!(matches!(end_task_retrying(unknown).await, Err(airlock_token::Error::UnknownTask(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let broken = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<bool, _>(airlock_token::Error::Key("gone".into()))
        };
        assert!(end_task_retrying(broken).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 9, "one attempt and eight retries");
    }
}
