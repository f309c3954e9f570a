//! `airlock policy …`: validate operator Cedar policies.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{CmdResult, Ctx, Failure, exit, print_json};

#[derive(clap::Subcommand, Debug)]
pub enum PolicyCmd {
    /// Validate .cedar files (or directories of them) against airlock's schema; errors point at file:line:column.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Policy files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(_ctx: &Ctx, cmd: PolicyCmd) -> CmdResult {
    match cmd {
        PolicyCmd::Check(a) => {
            let report = airlock_policy::check_files(&a.paths).map_err(|e| Failure::usage(e.to_string()))?;
            if a.json {
                let diag = |d: &airlock_policy::Diagnostic| serde_json::json!({ "file": d.file, "line": d.line, "column": d.column, "policy": d.policy, "message": d.message });
                print_json(&serde_json::json!({
                    "ok": report.is_ok(),
                    "files": report.files,
                    "policies": report.policies,
                    "errors": report.errors.iter().map(diag).collect::<Vec<_>>(),
                    "warnings": report.warnings.iter().map(diag).collect::<Vec<_>>(),
                }));
            } else {
                println!("{report}");
            }
            Ok(if report.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(exit::FAILED) })
        }
    }
}
