//! `airlock init` and `airlock doctor`.

use std::process::ExitCode;

use airlock_state::files;
use airlock_token::TokenAuthority;
use airlock_vault::KeyMode;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::app::{CmdResult, Ctx, Failure, exit, print_json};

/// Create the state directory, the vault master key and the token signing key.
///
/// The state directory is $AIRLOCK_HOME, else $XDG_DATA_HOME/airlock, else
/// ~/.local/share/airlock — never your working directory, where agents work.
/// It is created 0700; key files are 0600. Existing keys are never overwritten.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct InitArgs {
    /// Derive the master key from a passphrase (argon2id) instead of a key file.
    /// The passphrase comes from AIRLOCK_PASSPHRASE or a no-echo prompt; it is asked for again whenever the vault is opened.
    #[arg(long, conflicts_with = "external_key")]
    passphrase: bool,
    /// Take the master key from AIRLOCK_MASTER_KEY (64 hex chars) on every run; nothing secret is written to disk.
    #[arg(long)]
    external_key: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct InitOut {
    state_dir: String,
    key_mode: KeyMode,
    master_key_id: String,
    token_public_key: String,
}

pub async fn init(ctx: &Ctx, a: InitArgs) -> CmdResult {
    let state = ctx.state()?;
    // Refuse before touching anything, so a second init can never half-overwrite.
    for name in [files::DATABASE, files::MASTER_KEY, files::TOKEN_KEY, files::ADMIN_TOKEN] {
        if state.has(name) {
            return Err(
                Failure::from(airlock_state::Error::AlreadyInitialized(state.path(name))).hint("airlock is already set up here; `airlock doctor` checks it")
            );
        }
    }
    if let Ok(cwd) = std::env::current_dir()
        && state.root().starts_with(&cwd)
        && state.root() != cwd
        && std::env::var_os("AIRLOCK_HOME").is_none()
    {
        eprintln!("warning: the state directory {} is inside the current directory; agents started here could see it", state.root().display());
    }
    state.create()?;
    let mode = if a.passphrase {
        KeyMode::Passphrase
    } else if a.external_key {
        KeyMode::External
    } else {
        KeyMode::Keyfile
    };
    let passphrase = if a.passphrase { Some(new_passphrase()?) } else { None };
    let store = ctx.open_store(&state, true).await?;
    let key = airlock_vault::init_master_key(&state, &*store, mode, passphrase.as_deref().map(|p| &p[..])).await?;
    let authority = TokenAuthority::init(&state)?;
    let admin = Zeroizing::new(format!("{}\n", hex::encode(random32())));
    state.write_new_key(files::ADMIN_TOKEN, admin.as_bytes())?;
    let out = InitOut {
        state_dir: state.root().display().to_string(),
        key_mode: mode,
        master_key_id: key.id(),
        token_public_key: authority.public_key().to_bytes_hex(),
    };
    crate::app::audit(&*store, "airlock.init", &out.state_dir, "ok", None, serde_json::json!({ "key_mode": mode, "master_key_id": out.master_key_id })).await?;
    if a.json {
        print_json(&out);
    } else {
        println!("initialised airlock in {}", out.state_dir);
        println!(
            "  vault master key: {} ({})",
            out.master_key_id,
            match mode {
                KeyMode::Keyfile => "key file master.key, mode 0600",
                KeyMode::Passphrase => "derived from your passphrase with argon2id; nothing secret on disk",
                KeyMode::External => "from AIRLOCK_MASTER_KEY; nothing secret on disk",
            }
        );
        println!("  token signing key: token.key (public half in token.pub)");
        println!(
            "next:\n  airlock secret add NAME --env ENV --tier primary --upstream UPSTREAM < value.txt\n  airlock task start --agent NAME --env ENV --grant UPSTREAM:read --ttl 30m"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn random32() -> [u8; 32] {
    use rand_core::{OsRng, RngCore};
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    b
}

fn new_passphrase() -> Result<Zeroizing<Vec<u8>>, Failure> {
    if let Some(p) = std::env::var_os("AIRLOCK_PASSPHRASE").filter(|v| !v.is_empty()) {
        return Ok(Zeroizing::new(p.into_encoded_bytes()));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("new airlock passphrase (12+ characters): ")
            .map_err(|e| Failure::usage(format!("cannot read a passphrase: {e}")).hint("set AIRLOCK_PASSPHRASE when not on a terminal"))?,
    );
    let second = Zeroizing::new(rpassword::prompt_password("repeat passphrase: ").map_err(|e| Failure::usage(format!("cannot read a passphrase: {e}")))?);
    if *first != *second {
        return Err(Failure::usage("the passphrases do not match"));
    }
    Ok(Zeroizing::new(first.as_bytes().to_vec()))
}

/// Check the state directory, keys, database and audit chain, and say what to fix.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

pub async fn doctor(ctx: &Ctx, a: DoctorArgs) -> CmdResult {
    let mut checks = Vec::new();
    let mut push = |check: &'static str, r: Result<String, (String, String)>| match r {
        Ok(detail) => checks.push(Check { check, ok: true, detail, fix: None }),
        Err((detail, fix)) => checks.push(Check { check, ok: false, detail, fix: Some(fix) }),
    };
    let state = ctx.state()?;
    let problems = state.problems();
    let dir_ok = problems.is_empty();
    push(
        "state directory",
        if dir_ok {
            Ok(format!("{} (0700, owned by you)", state.root().display()))
        } else {
            Err((
                problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                match &problems[0] {
                    airlock_state::Error::NotInitialized(_) => "run `airlock init`".to_owned(),
                    airlock_state::Error::LoosePermissions { path, want, .. } => format!("chmod {want:o} {}", path.display()),
                    other => other.to_string(),
                },
            ))
        },
    );
    if let Ok(cwd) = std::env::current_dir() {
        let inside = state.root().starts_with(&cwd) && state.root() != cwd;
        push(
            "outside the workspace",
            if inside {
                Err((format!("{} is inside the current directory", state.root().display()), "set AIRLOCK_HOME to a directory outside any workspace".into()))
            } else {
                Ok("the state directory is not under the current directory".into())
            },
        );
    }
    if dir_ok {
        for (name, needed) in [(files::TOKEN_KEY, true), (files::TOKEN_PUBLIC_KEY, true), (files::ADMIN_TOKEN, true)] {
            push(
                "key file",
                if state.has(name) || !needed {
                    Ok(format!("{name} present"))
                } else {
                    Err((format!("{name} is missing"), "restore it from backup; without it tokens cannot be minted or verified".into()))
                },
            );
        }
        match ctx.store(&state).await.map_err(|f| f.message) {
            Err(e) => push("database", Err((e.to_string(), "run `airlock init`, or restore airlock.db from backup".into()))),
            Ok(store) => {
                match store.health().await {
                    Ok(h) => push("database", Ok(format!("{} schema v{} ({})", h.backend, h.schema_version, h.detail))),
                    Err(e) => push("database", Err((e.to_string(), "restore airlock.db from backup".into()))),
                }
                match airlock_vault::key_mode(&*store).await {
                    Ok(Some(KeyMode::Passphrase))
                        if std::env::var_os("AIRLOCK_PASSPHRASE").is_none() && std::env::var_os(airlock_vault::ENV_MASTER_KEY).is_none() =>
                    {
                        push("vault key", Ok("passphrase-protected (set AIRLOCK_PASSPHRASE to check it)".into()))
                    }
                    _ => match airlock_vault::open_master_key(&state, &*store, crate::app::read_passphrase).await {
                        Ok(k) => push("vault key", Ok(format!("master key {} opens the vault", k.id()))),
                        Err(e) => push("vault key", Err((e.to_string(), "supply the right master key (key file, AIRLOCK_MASTER_KEY or passphrase)".into()))),
                    },
                }
                match super::audit::verify_chain(&*store).await {
                    Ok(n) => push("audit chain", Ok(format!("{n} records, hash chain intact"))),
                    Err(e) => push("audit chain", Err((e, "the audit log was altered; keep the database for investigation".into()))),
                }
            }
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    if a.json {
        print_json(&serde_json::json!({ "ok": ok, "checks": checks }));
    } else {
        for c in &checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            println!("[{mark}] {}: {}", c.check, c.detail);
            if let Some(f) = &c.fix {
                println!("       fix: {f}");
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(if dir_ok { exit::FAILED } else { exit::STATE }) })
}
