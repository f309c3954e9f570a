//! `airlock token …`: inspect, verify and attenuate task tokens. Tokens are
//! always read from stdin: argv is visible to every process on the machine.

use std::process::ExitCode;
use std::sync::Arc;

use airlock_token::{Revocations, VerifiedTask, Verifier, VerifierOptions};

use crate::app::{CmdResult, Ctx, Failure, exit, now_unix, parse_duration, print_json, read_token_stdin, rfc3339};
use crate::cmd::task::parse_grants;

#[derive(clap::Subcommand, Debug)]
pub enum TokenCmd {
    /// Print what a token (on stdin) claims: task, agent, environment, grants, expiry. Checks the signature; shows expired tokens too.
    Inspect(JsonArg),
    /// Check a token (on stdin) exactly as the gateway will: signature, expiry, revocation, narrowing. Exit 4 with the reason if it fails.
    Verify(JsonArg),
    /// Read a token on stdin and print a narrower one for a sub-agent: fewer grants and/or a shorter lifetime, never more.
    ///
    /// Example: airlock token attenuate --grant github:read --ttl 10m < parent.token > child.token
    Attenuate(AttenuateArgs),
}

#[derive(clap::Args, Debug)]
pub struct JsonArg {
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct AttenuateArgs {
    /// Keep only these grants (each must be covered by the parent's). Repeatable. Default: keep the parent's.
    #[arg(long = "grant", value_name = "UPSTREAM:CAPABILITY")]
    grants: Vec<String>,
    /// New lifetime from now; must end before the parent's expiry.
    #[arg(long)]
    ttl: Option<String>,
}

fn print_claims(t: &VerifiedTask, json: bool, verdict: &str) {
    if json {
        let mut v = serde_json::to_value(t).expect("serialisable");
        v["expires"] = rfc3339(t.expires_at).into();
        v["verdict"] = verdict.into();
        print_json(&v);
    } else {
        println!("task:         {}", t.task_id);
        println!("agent:        {}", t.agent);
        println!("environment:  {}", t.environment);
        println!("grants:       {}", t.grants.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
        println!("purpose:      {}", t.purpose.as_deref().unwrap_or("-"));
        println!("expires:      {}", rfc3339(t.expires_at));
        println!("attenuations: {}", t.attenuations);
        println!("token hash:   {}", t.token_hash);
        println!("verdict:      {verdict}");
    }
}

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> CmdResult {
    match cmd {
        TokenCmd::Inspect(a) => {
            let token = read_token_stdin()?;
            let state = ctx.state()?;
            state.check_dir()?;
            let public = airlock_token::load_public_key(&state)?;
            let claims = airlock_token::inspect(&token, &public, now_unix())?;
            let verdict = if now_unix() > claims.expires_at { "expired" } else { "signature valid (run `airlock token verify` for the full check)" };
            print_claims(&claims, a.json, verdict);
            Ok(ExitCode::SUCCESS)
        }
        TokenCmd::Verify(a) => {
            let token = read_token_stdin()?;
            let state = ctx.checked_state()?;
            let public = airlock_token::load_public_key(&state)?;
            let store = ctx.store(&state).await?;
            let revocations = Revocations::new();
            revocations.refresh(&*store).await.map_err(Failure::from)?;
            let verifier = Verifier::new(public, Arc::clone(&revocations), VerifierOptions::default());
            match verifier.verify_uncached(&token, now_unix()) {
                Ok(t) => {
                    print_claims(&t, a.json, "valid");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    if a.json {
                        print_json(&serde_json::json!({ "verdict": "refused", "error": e.code(), "message": e.to_string() }));
                        Ok(ExitCode::from(exit::REFUSED))
                    } else {
                        Err(Failure::from(e))
                    }
                }
            }
        }
        TokenCmd::Attenuate(a) => {
            let grants = if a.grants.is_empty() { None } else { Some(parse_grants(&a.grants)?) };
            let ttl = a.ttl.as_deref().map(parse_duration).transpose().map_err(|e| Failure::usage(format!("--ttl: {e}")))?;
            if grants.is_none() && ttl.is_none() {
                return Err(Failure::usage("nothing to narrow: give --grant and/or --ttl"));
            }
            let token = read_token_stdin()?;
            let state = ctx.state()?;
            state.check_dir()?;
            // Attenuation needs only the public key: it works offline, without the broker.
            let public = airlock_token::load_public_key(&state)?;
            let parent_hash = airlock_token::inspect(&token, &public, now_unix())?.token_hash;
            let (child, claims) = airlock_token::attenuate(&token, &public, grants.as_deref(), ttl, now_unix())?;
            // Audit when the store is reachable; attenuation itself needs no store.
            if let Ok(state) = ctx.checked_state()
                && let Ok(store) = ctx.store(&state).await
            {
                crate::app::audit(
                    &*store,
                    "token.attenuate",
                    &claims.task_id,
                    "ok",
                    Some(&claims.task_id),
                    serde_json::json!({
                        "parent_token_hash": parent_hash, "token_hash": claims.token_hash,
                        "grants": claims.grants, "expires_at": claims.expires_at,
                    }),
                )
                .await?;
            }
            eprintln!(
                "narrowed token for task {}: grants {}, expires {}",
                claims.task_id,
                claims.grants.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                rfc3339(claims.expires_at)
            );
            println!("{child}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
