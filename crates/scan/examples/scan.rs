//! Minimal driver for benchmarking the engine without the CLI:
//! `cargo run --release -p airlock-scan --example scan -- [--rules FILE]… [--json] [--workspace] PATH…`
//! (`--workspace`: files plus the git history of every repository inside, as `airlock run`'s
//! preflight scans them; one PATH)
//! (`--cache DIR`: with `--workspace`, use and update the clean cache in DIR, as the
//! preflight does with the state directory)
//! Prints the summary line (and JSON findings with `--json`); exit 0 clean, 1 findings, 2 error.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut rules = Vec::new();
    let mut paths = Vec::new();
    let mut json = false;
    let mut workspace = false;
    let mut cache_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rules" => rules.push(PathBuf::from(args.next().unwrap_or_default())),
            "--json" => json = true,
            "--workspace" => workspace = true,
            "--cache" => cache_dir = args.next().map(PathBuf::from),
            _ => paths.push(PathBuf::from(a)),
        }
    }
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }
    let scanner = match airlock_scan::Scanner::with_rule_files(&rules) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = airlock_scan::ScanOptions::default();
    let result = match (&cache_dir, workspace) {
        (Some(dir), true) => {
            let cache = airlock_scan::CleanCache::open(dir, &scanner);
            let r = scanner.scan_workspace_cached(&paths[0], &opts, &cache);
            if let Err(e) = cache.save() {
                eprintln!("warning: {e}");
            }
            r
        }
        (None, true) => scanner.scan_workspace(&paths[0], &opts),
        _ => scanner.scan_paths(&paths, &opts),
    };
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let res = if json { airlock_scan::write_json(&mut out, &report, false) } else { airlock_scan::write_summary(&mut std::io::stderr(), &report) };
    if let Err(e) = res {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    eprintln!("rules: {}", scanner.rules().len());
    ExitCode::from(u8::from(!report.findings.is_empty()))
}
