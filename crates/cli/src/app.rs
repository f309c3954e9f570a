//! Shared plumbing for commands: locating state, opening the store, vault and
//! broker, reading secrets and tokens from stdin, and turning library errors
//! into exit codes and messages that say what happened and what to do.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use airlock_state::{StateDir, files};
use airlock_store::{SqliteStore, Store};
use airlock_vault::Vault;
use zeroize::Zeroizing;

/// Exit codes (documented in `airlock --help` and the README).
pub mod exit {
    /// Generic failure.
    pub const FAILED: u8 = 1;
    /// Bad usage or bad input.
    pub const USAGE: u8 = 2;
    /// State directory missing or unsafe.
    pub const STATE: u8 = 3;
    /// A token or key was refused.
    pub const REFUSED: u8 = 4;
    /// `airlock run` refused to start: the preflight scan found readable secrets.
    pub const PREFLIGHT: u8 = airlock_run::EXIT_PREFLIGHT;
}

/// A command failure: what to print and how to exit.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// Stable machine-readable code (printed with --json).
    pub kind: &'static str,
    /// Human message: what happened and why.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Self { code, kind, message: message.into(), hint: None }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(exit::USAGE, "bad_input", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(exit::FAILED, "failed", message)
    }
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
    pub fn report(self) -> ExitCode {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let prefix = if color { "\x1b[1;31merror:\x1b[0m" } else { "error:" };
        eprintln!("{prefix} {} [{}]", self.message, self.kind);
        if let Some(h) = self.hint {
            eprintln!("  hint: {h}");
        }
        ExitCode::from(self.code)
    }
}

pub type CmdResult = Result<ExitCode, Failure>;

impl From<airlock_state::Error> for Failure {
    fn from(e: airlock_state::Error) -> Self {
        Failure::new(exit::STATE, "state", e.to_string())
    }
}

impl From<airlock_store::Error> for Failure {
    fn from(e: airlock_store::Error) -> Self {
        use airlock_store::Error as E;
        match e {
            E::DuplicateSecret { .. } | E::DuplicateTask(_) => Failure::new(exit::USAGE, "duplicate", e.to_string()),
            E::NotFound { .. } => Failure::new(exit::FAILED, "not_found", e.to_string()),
            other => Failure::new(exit::FAILED, "store", other.to_string()).hint("run `airlock doctor` to check the database"),
        }
    }
}

impl From<airlock_vault::Error> for Failure {
    fn from(e: airlock_vault::Error) -> Self {
        use airlock_vault::Error as E;
        match e {
            E::State(s) => s.into(),
            E::Store(s) => s.into(),
            E::WrongKey(_) | E::InvalidKey(_) | E::PassphraseRequired => Failure::new(exit::REFUSED, "wrong_key", e.to_string()),
            E::EmptyValue | E::TooLarge(_) | E::Ambiguous { .. } => Failure::usage(e.to_string()),
            E::NotFound { .. } => Failure::new(exit::FAILED, "not_found", e.to_string()),
            other => Failure::new(exit::FAILED, "vault", other.to_string()),
        }
    }
}

impl From<airlock_token::Error> for Failure {
    fn from(e: airlock_token::Error) -> Self {
        use airlock_token::Error as E;
        match e {
            E::State(s) => s.into(),
            E::Store(s) => s.into(),
            E::TtlTooLong { .. } | E::TtlInvalid(_) | E::NoGrants => Failure::usage(e.to_string()),
            E::UnknownTask(_) => Failure::new(exit::FAILED, "unknown_task", e.to_string()),
            other => Failure::new(exit::REFUSED, other.code(), other.to_string()),
        }
    }
}

/// What every command gets: where state is, where config is.
pub struct Ctx {
    home: Option<PathBuf>,
    config: Option<PathBuf>,
    /// The configuration lookup, done once (so its warning is printed once).
    lookup: std::sync::OnceLock<Result<Option<PathBuf>, String>>,
}

impl Ctx {
    pub fn new(home: Option<PathBuf>, config: Option<PathBuf>) -> Self {
        Self { home, config, lookup: std::sync::OnceLock::new() }
    }

    /// Whether `--config`/`$AIRLOCK_CONFIG` was given.
    pub fn explicit_config(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// The state directory handle (no I/O).
    pub fn state(&self) -> Result<StateDir, Failure> {
        let dir = match &self.home {
            Some(h) if h.is_relative() => {
                return Err(Failure::usage(format!("--home/AIRLOCK_HOME must be an absolute path, got {}", h.display())));
            }
            Some(h) => StateDir::at(h.clone())?,
            None => StateDir::locate()?.0,
        };
        Ok(dir)
    }

    /// The state directory, checked: exists, 0700, keys 0600.
    pub fn checked_state(&self) -> Result<StateDir, Failure> {
        let s = self.state()?;
        s.check()?;
        let external_db = std::env::var_os("AIRLOCK_DATABASE_URL").is_some_and(|u| !u.is_empty());
        if !external_db && !s.has(files::DATABASE) {
            return Err(airlock_state::Error::NotInitialized(s.path(files::DATABASE)).into());
        }
        Ok(s)
    }

    /// The configured airlock.toml, if any: `--config`/`$AIRLOCK_CONFIG` (must exist), else
    /// `<state dir>/airlock.toml`, else `/etc/airlock/airlock.toml` — never the current
    /// directory (the agent's workspace). An ignored `./airlock.toml` gets a one-line warning.
    pub fn config_path(&self) -> Result<Option<PathBuf>, Failure> {
        let found = self.lookup.get_or_init(|| {
            let state = self.state().ok().map(|s| s.root().to_owned());
            let cwd = std::env::current_dir().ok();
            let l = airlock_gateway::placement::locate(self.config.as_deref(), state.as_deref(), cwd.as_deref()).map_err(|e| e.to_string())?;
            if let Some(ignored) = &l.ignored {
                let to = state.map(|s| s.join(airlock_gateway::placement::CONFIG_FILE).display().to_string());
                eprintln!(
                    "warning: {} is not read (a config in the working directory could be rewritten by an agent); move it to {} or {}, or pass --config",
                    ignored.display(),
                    to.as_deref().unwrap_or("<state dir>/airlock.toml"),
                    airlock_gateway::placement::SYSTEM_CONFIG
                );
            }
            Ok(l.found.map(|(p, _)| p))
        });
        found.clone().map_err(Failure::usage)
    }

    /// The validated configuration, if one is found (see [`Ctx::config_path`]).
    pub fn config(&self) -> Result<Option<airlock_gateway::config::Config>, Failure> {
        match self.config_path()? {
            None => Ok(None),
            Some(p) => airlock_gateway::config::Config::load(&p).map(Some).map_err(|e| Failure::usage(e.to_string())),
        }
    }

    /// Refuse grants the configuration does not define (unknown upstream or capability,
    /// with "did you mean …"). Without a configuration they cannot be checked: one warning.
    pub fn check_grants(&self, grants: &[airlock_types::Grant]) -> Result<(), Failure> {
        let Some(config) = self.config()? else {
            eprintln!(
                "warning: no configuration found (--config, $AIRLOCK_CONFIG, <state dir>/airlock.toml, {}), so the grants are not checked against configured upstreams",
                airlock_gateway::placement::SYSTEM_CONFIG
            );
            return Ok(());
        };
        config.check_grants(grants).map_err(unknown_grant)
    }

    /// The maximum task lifetime: `[broker] max_ttl` in airlock.toml, default 8h.
    pub fn max_ttl(&self) -> Result<Duration, Failure> {
        let Some(path) = self.config_path()? else { return Ok(airlock_token::DEFAULT_MAX_TTL) };
        let text = std::fs::read_to_string(&path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        match table.get("broker").and_then(|b| b.get("max_ttl")) {
            None => Ok(airlock_token::DEFAULT_MAX_TTL),
            Some(toml::Value::String(s)) => parse_duration(s).map_err(|e| Failure::usage(format!("{}: [broker] max_ttl: {e}", path.display()))),
            Some(_) => Err(Failure::usage(format!("{}: [broker] max_ttl must be a string such as \"8h\"", path.display()))),
        }
    }

    /// The configured store: PostgreSQL when `AIRLOCK_DATABASE_URL` is set
    /// (several gateway replicas share it), else the SQLite file in the state dir.
    pub async fn store(&self, state: &StateDir) -> Result<Arc<dyn Store>, Failure> {
        self.open_store(state, false).await
    }

    /// Like [`Ctx::store`], creating the SQLite file if needed (for `init`).
    pub async fn open_store(&self, state: &StateDir, create: bool) -> Result<Arc<dyn Store>, Failure> {
        if let Some(url) = std::env::var("AIRLOCK_DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Failure::usage("AIRLOCK_DATABASE_URL must be a postgres:// URL (unset it to use the SQLite file in the state directory)"));
            }
            return Ok(Arc::new(airlock_store::PgStore::connect(&url).await?));
        }
        let path = state.path(files::DATABASE);
        let s = if create { SqliteStore::open(&path).await? } else { SqliteStore::open_existing(&path).await? };
        Ok(Arc::new(s))
    }

    pub async fn vault(&self, state: &StateDir, store: Arc<dyn Store>) -> Result<Vault, Failure> {
        let key = airlock_vault::open_master_key(state, &*store, read_passphrase).await?;
        Ok(Vault::new(store, key))
    }
}

/// A grant the configuration does not define, with the near miss as the hint.
pub fn unknown_grant(e: airlock_gateway::grants::GrantError) -> Failure {
    let f = Failure::new(exit::USAGE, "unknown_grant", e.to_string());
    match e.suggested_grant() {
        Some(g) => f.hint(format!("use --grant {g}")),
        None => f.hint("`airlock upstream list` shows the configured upstreams and their capabilities"),
    }
}

/// Parse `30m`, `1h30m`, `90s`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 30m, 1h, 90s"))
}

/// Passphrase from AIRLOCK_PASSPHRASE, else a no-echo prompt on the terminal.
pub fn read_passphrase() -> Option<Zeroizing<Vec<u8>>> {
    if let Some(v) = std::env::var_os("AIRLOCK_PASSPHRASE").filter(|v| !v.is_empty()) {
        return Some(Zeroizing::new(v.into_encoded_bytes()));
    }
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        return None;
    }
    rpassword::prompt_password("airlock passphrase: ").ok().map(|s| Zeroizing::new(s.into_bytes()))
}

/// Read a secret from `--from-file` or stdin (prompting without echo on a TTY).
/// One trailing newline is removed.
pub fn read_secret(from_file: Option<&Path>, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::new());
    match from_file {
        Some(p) => {
            let mut f = std::fs::File::open(p).map_err(|e| Failure::usage(format!("cannot read --from-file {}: {e}", p.display())))?;
            f.read_to_end(&mut buf).map_err(|e| Failure::usage(format!("cannot read --from-file {}: {e}", p.display())))?;
        }
        None if std::io::stdin().is_terminal() => {
            let v = rpassword::prompt_password(format!("value for {what} (input hidden): "))
                .map_err(|e| Failure::usage(format!("cannot read the value from the terminal: {e}")))?;
            buf.extend_from_slice(v.as_bytes());
            drop(Zeroizing::new(v));
        }
        None => {
            std::io::stdin().read_to_end(&mut buf).map_err(|e| Failure::usage(format!("cannot read the value from stdin: {e}")))?;
        }
    }
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    Ok(buf)
}

/// Read a token from stdin (first non-empty line, trimmed).
pub fn read_token_stdin() -> Result<String, Failure> {
    if std::io::stdin().is_terminal() {
        return Err(Failure::usage("pipe the token on stdin, e.g. `echo \"$AIRLOCK_TOKEN\" | airlock token verify`")
            .hint("tokens are never taken as command-line arguments: argv is visible to every process on the machine"));
    }
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::usage(format!("cannot read the token from stdin: {e}")))?;
    let t = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_owned();
    if t.is_empty() {
        return Err(Failure::usage("no token on stdin"));
    }
    Ok(t)
}

/// Who is acting, for audit records: `cli:$USER`.
pub fn actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| format!("uid{}", rustix::process::getuid().as_raw()));
    format!("cli:{user}")
}

/// Write an audit record for a CLI action; a failure to audit fails the command.
pub async fn audit(store: &dyn Store, action: &str, subject: &str, outcome: &str, task: Option<&str>, detail: serde_json::Value) -> Result<(), Failure> {
    store.append_audit(&airlock_token::audit_event(&actor(), action, subject, outcome, task, detail)).await?;
    Ok(())
}

/// Print JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// Whether to use color on stdout.
pub fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Refuse core dumps (they would hold plaintext) and ptrace by other same-uid processes.
pub fn harden_process() {
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, rustix::process::Rlimit { current: Some(0), maximum: Some(0) });
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).try_init();
}

/// Render unix seconds as RFC 3339.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
