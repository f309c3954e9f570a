//! `airlock upstream …`: add a built-in preset upstream to airlock.toml, list upstreams.
//!
//! Wiring only: the preset table, the appended block and its validation live in
//! `airlock_gateway::presets`; where the file may live in `airlock_gateway::placement`.
//! Never takes or prints a secret value: an upstream names a vault secret.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_gateway::placement;
use airlock_gateway::presets::{self, AddError, NewUpstream};

use crate::app::{CmdResult, Ctx, Failure, exit, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum UpstreamCmd {
    /// Add a built-in preset upstream (anthropic, openai) to the configuration.
    ///
    /// Appends an [[upstream]] block to the file (--config, else the one in use, else
    /// <state dir>/airlock.toml, created if missing), keeping its text and comments, after
    /// checking the result with the real loader. Example:
    ///   airlock upstream add anthropic --env staging --secret anthropic-staging-key
    Add(AddArgs),
    /// List the configured upstreams (name, environment, base URL, preset, secret name).
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The preset: anthropic or openai.
    preset: String,
    /// The environment the upstream serves.
    #[arg(long)]
    env: String,
    /// The vault secret holding the real API key (its name; the value goes in with `airlock secret add`).
    #[arg(long)]
    secret: String,
    /// Route name (default: the preset's name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(ctx: &Ctx, cmd: UpstreamCmd) -> CmdResult {
    match cmd {
        UpstreamCmd::Add(a) => add(ctx, a),
        UpstreamCmd::List(a) => list(ctx, a),
    }
}

/// The file `upstream add` writes: `--config`, else the configuration in use, else the
/// state directory's (which must exist).
fn target(ctx: &Ctx) -> Result<PathBuf, Failure> {
    if let Some(p) = ctx.explicit_config() {
        return Ok(p.to_owned());
    }
    if let Some(p) = ctx.config_path()? {
        return Ok(p);
    }
    let state = ctx.state()?;
    if !state.root().is_dir() {
        return Err(Failure::new(exit::STATE, "state", format!("state directory {} does not exist", state.root().display()))
            .hint("run `airlock init` first, or pass --config FILE"));
    }
    Ok(state.path(placement::CONFIG_FILE))
}

fn add(ctx: &Ctx, a: AddArgs) -> CmdResult {
    let preset = presets::lookup(&a.preset).map_err(add_failure)?;
    let path = target(ctx)?;
    // Refuse a file an agent could rewrite, as `airlock serve` would.
    placement::refuse_in_workspace(std::slice::from_ref(&path)).map_err(|e| Failure::new(exit::USAGE, "config_in_workspace", e.to_string()))?;
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::usage(format!("cannot read {}: {e}", path.display())));
        }
    };
    let new = NewUpstream { preset, name: a.name.as_deref(), environment: &a.env, secret: &a.secret };
    let (text, config) = airlock_gateway::config::add_to_config(&existing, &path, &new).map_err(add_failure)?;
    write(&path, &text).map_err(|e| Failure::new(exit::FAILED, "write", format!("cannot write {}: {e}", path.display())))?;
    let name = new.name();
    let created = if existing.is_empty() { "created" } else { "updated" };
    println!("added upstream {name:?} (preset {}, environment {}) to {} ({created})", preset.name, a.env, path.display());
    println!(
        "  agents call {}/{name} with their task token in {}; `airlock env` prints {} and {}",
        config.public_url, preset.header, preset.env_base_url, preset.env_key
    );
    println!("  grant model calls with: --grant {}", new.model_grant());
    println!("  store the real key (if not done yet): airlock secret add {} --env {} --upstream {name} < key.txt", a.secret, a.env);
    Ok(ExitCode::SUCCESS)
}

fn add_failure(e: AddError) -> Failure {
    match &e {
        AddError::Duplicate { .. } => Failure::new(exit::USAGE, "duplicate", e.to_string()),
        _ => Failure::usage(e.to_string()),
    }
}

/// Replace `path` with `text`: a new file next to it, renamed over it (keeping the old
/// file's permissions), so a crash never leaves half a configuration.
fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let perms = mode.unwrap_or_else(|| std::os::unix::fs::PermissionsExt::from_mode(0o644));
    std::fs::set_permissions(tmp.path(), perms)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn list(ctx: &Ctx, a: ListArgs) -> CmdResult {
    let Some(config) = ctx.config()? else {
        return Err(Failure::usage("no configuration found").hint(format!(
            "pass --config FILE, or put it at <state dir>/airlock.toml or {}; `airlock upstream add anthropic --env staging --secret NAME` creates one",
            placement::SYSTEM_CONFIG
        )));
    };
    let rows: Vec<serde_json::Value> = config
        .upstreams
        .iter()
        .map(|u| {
            let mut caps = vec!["read".to_owned(), "write".to_owned(), "destroy".to_owned()];
            caps.extend(u.operation_names.iter().cloned());
            serde_json::json!({
                "name": u.name.as_str(),
                "environment": u.environment.as_str(),
                "base_url": u.base_url,
                "preset": u.preset,
                "secret": u.secret,
                "capabilities": caps,
            })
        })
        .collect();
    if a.json {
        print_json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no upstreams in {}; add one with `airlock upstream add anthropic --env staging --secret NAME`", config.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<12} {:<10} {:<24} {:<40} CAPABILITIES", "NAME", "ENV", "PRESET", "SECRET", "BASE URL");
    for (u, r) in config.upstreams.iter().zip(&rows) {
        let caps: Vec<&str> = r["capabilities"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
        println!("{:<20} {:<12} {:<10} {:<24} {:<40} {}", u.name, u.environment, u.preset.unwrap_or("-"), u.secret, u.base_url, caps.join(" "));
    }
    println!("({})", config.path.display());
    Ok(ExitCode::SUCCESS)
}
