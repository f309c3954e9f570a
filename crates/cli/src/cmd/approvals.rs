//! `airlock approvals list`, `airlock approve ID`, `airlock deny ID`.
//!
//! These talk to the gateway's admin API (never the agent-facing port) with the
//! admin credential from the state directory (`admin.token`). A task token can
//! never approve: the admin API refuses anything but the admin credential.

use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::app::{CmdResult, Ctx, Failure, exit, print_json, rfc3339};

/// Where the admin API is.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Admin API base URL (default: AIRLOCK_ADMIN_URL, else `[gateway] admin_listen` from airlock.toml, else http://127.0.0.1:7701).
    #[arg(long, value_name = "URL", env = "AIRLOCK_ADMIN_URL")]
    admin: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ApprovalsCmd {
    /// List approval requests (pending by default).
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// Include decided and used requests.
    #[arg(long)]
    all: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

/// Approve one pending request: the same request, retried by the agent, passes once.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// Approval id (from `airlock approvals list` or the agent's error).
    id: String,
    /// A note for the audit log.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// Deny one pending request.
#[derive(clap::Args, Debug)]
pub struct DenyArgs {
    /// Approval id.
    id: String,
    /// Why (recorded in the audit log and returned to the agent).
    #[arg(long, required = true)]
    reason: String,
    #[command(flatten)]
    admin: AdminArgs,
}

fn admin_base(ctx: &Ctx, a: &AdminArgs) -> Result<String, Failure> {
    if let Some(u) = &a.admin {
        return Ok(u.trim_end_matches('/').to_owned());
    }
    if let Some(path) = ctx.config_path()? {
        let cfg = airlock_gateway::config::Config::load(&path).map_err(|e| Failure::usage(e.to_string()))?;
        return Ok(format!("http://{}", cfg.admin_listen));
    }
    Ok("http://127.0.0.1:7701".to_owned())
}

async fn call(ctx: &Ctx, a: &AdminArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
    let state = ctx.checked_state()?;
    let token = state.read_key(airlock_state::files::ADMIN_TOKEN)?;
    let token = Zeroizing::new(String::from_utf8_lossy(&token).trim().to_owned());
    let base = admin_base(ctx, a)?;
    let authority = base
        .strip_prefix("http://")
        .ok_or_else(|| Failure::usage(format!("admin URL {base} must be http://HOST:PORT (the admin API listens on loopback)")))?
        .to_owned();
    let unreachable = |e: String| {
        Failure::new(exit::FAILED, "admin_unreachable", format!("cannot reach the airlock admin API at {base}: {e}"))
            .hint("is `airlock serve` running? Set --admin or AIRLOCK_ADMIN_URL to its admin address")
    };
    let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| unreachable(e.to_string()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &authority)
        .header("authorization", format!("Bearer {}", &*token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .map_err(|e| Failure::internal(e.to_string()))?;
    let resp = send.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(v);
    }
    let code = v.get("error").and_then(Value::as_str).unwrap_or("admin_error").to_owned();
    let msg = v.get("message").and_then(Value::as_str).unwrap_or("the admin API refused the request").to_owned();
    let exit_code = match status.as_u16() {
        401 | 403 => exit::REFUSED,
        404 | 409 => exit::FAILED,
        _ => exit::FAILED,
    };
    Err(Failure::new(exit_code, "admin_refused", format!("{msg} ({code}, HTTP {})", status.as_u16())))
}

fn show(a: &Value) {
    let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let t = |k: &str| a.get(k).and_then(Value::as_i64).map(rfc3339).unwrap_or_else(|| "-".into());
    println!(
        "{:<36} {:<9} {:<16} {:<18} {:<18} {:<12} {:<10} {}",
        s("id"),
        s("status"),
        s("agent"),
        s("upstream"),
        s("operation"),
        s("resource"),
        s("environment"),
        t("created_at")
    );
}

pub async fn list(ctx: &Ctx, cmd: ApprovalsCmd) -> CmdResult {
    let ApprovalsCmd::List(a) = cmd;
    let path = if a.all { "/v1/approvals" } else { "/v1/approvals?status=pending" };
    let v = call(ctx, &a.admin, "GET", path, None).await?;
    if a.json {
        print_json(&v);
    } else {
        let items = v.as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            println!("no {}approval requests", if a.all { "" } else { "pending " });
        } else {
            println!("{:<36} {:<9} {:<16} {:<18} {:<18} {:<12} {:<10} REQUESTED", "ID", "STATUS", "AGENT", "UPSTREAM", "OPERATION", "RESOURCE", "ENV");
            for i in &items {
                show(i);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approve(ctx: &Ctx, a: ApproveArgs) -> CmdResult {
    let v = call(ctx, &a.admin, "POST", &format!("/v1/approvals/{}/approve", a.id), Some(serde_json::json!({ "note": a.note }))).await?;
    println!(
        "approved {}: {} on {} ({}); the agent's identical retry will pass once",
        a.id,
        v.get("operation").and_then(Value::as_str).unwrap_or("?"),
        v.get("resource").and_then(Value::as_str).unwrap_or("?"),
        v.get("environment").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn deny(ctx: &Ctx, a: DenyArgs) -> CmdResult {
    call(ctx, &a.admin, "POST", &format!("/v1/approvals/{}/deny", a.id), Some(serde_json::json!({ "reason": a.reason }))).await?;
    println!("denied {}", a.id);
    Ok(ExitCode::SUCCESS)
}
