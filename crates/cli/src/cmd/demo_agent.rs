//! `airlock __demo-agent` (hidden): the scripted agent of `airlock demo`.
//!
//! Wiring only: the script lives in `airlock_fixture::agent`. It runs as its own process
//! so that `airlock run` can start it exactly like a real agent; its network settings come
//! from its environment (`HTTPS_PROXY`, `SSL_CERT_FILE`), as `curl`'s would. It prints one
//! JSON object per line on stdout (`found`, each `step`, `done`) for `airlock demo` to render.

use std::path::PathBuf;
use std::process::ExitCode;

use airlock_fixture::agent;
use serde_json::json;

use crate::app::{CmdResult, Failure};

/// Arguments of the scripted agent.
#[derive(clap::Args, Debug)]
pub struct DemoAgentArgs {
    /// The workspace it searches for a token.
    #[arg(long, value_name = "DIR")]
    workspace: PathBuf,
    /// The cloud API's GraphQL endpoint (`https://host:port/graphql`).
    #[arg(long, value_name = "URL")]
    api: String,
}

pub async fn run(a: DemoAgentArgs) -> CmdResult {
    let client = agent::Client::from_env();
    let (found, steps, took) = agent::run(&client, &a.workspace, &a.api).await;
    let line = |v: serde_json::Value| println!("{v}");
    match &found {
        Some(f) => line(json!({ "found": f.source })),
        None => line(json!({ "found": null })),
    }
    for s in &steps {
        line(json!({ "step": s }));
    }
    line(json!({ "done": { "ms": took.as_millis() as u64, "steps": steps.len() } }));
    if found.is_none() {
        return Err(Failure::internal("the agent found no API token in its workspace or environment"));
    }
    Ok(ExitCode::SUCCESS)
}
