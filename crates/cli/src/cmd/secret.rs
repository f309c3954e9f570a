//! `airlock secret …`: the vault from the command line. Values are read from
//! stdin or a file, never from argv; listings never show values.

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_types::{Environment, Name, Tier};
use airlock_vault::{NewSecret, SecretValue};

use crate::app::{CmdResult, Ctx, Failure, audit, print_json, read_secret};

#[derive(clap::Subcommand, Debug)]
pub enum SecretCmd {
    /// Store a new secret. The value is read from stdin (or --from-file), never from the command line.
    ///
    /// Example: airlock secret add github-staging --env staging --tier primary --upstream github < token.txt
    Add(AddArgs),
    /// List secrets (metadata only; values are never shown).
    List(ListArgs),
    /// Replace a secret's value, keeping its metadata. The new value is read like `add`.
    Rotate(RotateArgs),
    /// Delete a secret.
    Rm(RmArgs),
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Secret name (letters, digits, '.', '_', '-').
    name: String,
    /// Environment the secret belongs to (e.g. staging, production).
    #[arg(long)]
    env: String,
    /// primary (live data) or backup (recovery copies).
    #[arg(long, default_value = "primary")]
    tier: String,
    /// The upstream (as named in airlock.toml) this secret may be sent to.
    #[arg(long)]
    upstream: String,
    /// What the secret is for.
    #[arg(long)]
    description: Option<String>,
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,
    /// Print the stored metadata as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    /// Secret name.
    name: String,
    /// Environment, when the name exists in several.
    #[arg(long)]
    env: Option<String>,
    /// Read the new value from this file instead of stdin.
    #[arg(long, value_name = "PATH")]
    from_file: Option<PathBuf>,
    /// Print the new metadata as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Secret name.
    name: String,
    /// Environment, when the name exists in several.
    #[arg(long)]
    env: Option<String>,
}

fn env_arg(s: &str) -> Result<Environment, Failure> {
    s.parse().map_err(|e: airlock_types::Error| Failure::usage(e.to_string()))
}

fn opt_env(s: Option<&str>) -> Result<Option<Environment>, Failure> {
    s.map(env_arg).transpose()
}

pub async fn run(ctx: &Ctx, cmd: SecretCmd) -> CmdResult {
    match cmd {
        SecretCmd::Add(a) => {
            let spec = NewSecret {
                name: Name::parse("secret", &a.name).map_err(|e| Failure::usage(e.to_string()))?,
                environment: env_arg(&a.env)?,
                tier: a.tier.parse::<Tier>().map_err(|e| Failure::usage(e.to_string()))?,
                upstream: Name::parse("upstream", &a.upstream).map_err(|e| Failure::usage(e.to_string()))?,
                description: a.description,
            };
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let vault = ctx.vault(&state, store.clone()).await?;
            let value = SecretValue::new(read_secret(a.from_file.as_deref(), &a.name)?);
            let meta = vault.add(&spec, &value).await?;
            drop(value);
            audit(
                &*store,
                "secret.add",
                &meta.name,
                "ok",
                None,
                serde_json::json!({
                    "environment": meta.environment, "tier": meta.tier, "upstream": meta.upstream, "version": meta.version,
                }),
            )
            .await?;
            if a.json {
                print_json(&meta);
            } else {
                println!("stored secret {} (environment {}, tier {}, upstream {})", meta.name, meta.environment, meta.tier, meta.upstream);
            }
        }
        SecretCmd::List(a) => {
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            // Listing needs no key: metadata is not encrypted.
            let list: Vec<airlock_vault::SecretMeta> = store.list_secrets().await?.iter().map(Into::into).collect();
            if a.json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no secrets stored; add one with `airlock secret add`");
            } else {
                println!("{:<28} {:<12} {:<8} {:<20} {:>3}  UPDATED", "NAME", "ENV", "TIER", "UPSTREAM", "VER");
                for m in &list {
                    println!("{:<28} {:<12} {:<8} {:<20} {:>3}  {}", m.name, m.environment, m.tier, m.upstream, m.version, m.updated_at);
                }
            }
        }
        SecretCmd::Rotate(a) => {
            let env = opt_env(a.env.as_deref())?;
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let vault = ctx.vault(&state, store.clone()).await?;
            // Resolve the record first so a typo fails before the value is read.
            vault.find(&a.name, env.as_ref()).await?;
            let value = SecretValue::new(read_secret(a.from_file.as_deref(), &a.name)?);
            let meta = vault.rotate(&a.name, env.as_ref(), &value).await?;
            audit(&*store, "secret.rotate", &meta.name, "ok", None, serde_json::json!({ "environment": meta.environment, "version": meta.version })).await?;
            if a.json {
                print_json(&meta);
            } else {
                println!("rotated secret {} (environment {}) to version {}", meta.name, meta.environment, meta.version);
            }
        }
        SecretCmd::Rm(a) => {
            let env = opt_env(a.env.as_deref())?;
            let state = ctx.checked_state()?;
            let store = ctx.store(&state).await?;
            let vault = ctx.vault(&state, store.clone()).await?;
            let meta = vault.remove(&a.name, env.as_ref()).await?;
            audit(&*store, "secret.remove", &meta.name, "ok", None, serde_json::json!({ "environment": meta.environment })).await?;
            println!("removed secret {} (environment {})", meta.name, meta.environment);
        }
    }
    Ok(ExitCode::SUCCESS)
}
