//! `airlock scan`: find every credential an agent could read, and (`--fix`) move them
//! into the vault, leaving `airlock://secret/NAME` references behind.
//!
//! Wiring only: detection lives in `airlock-scan`. This module picks the sources,
//! applies baselines, renders reports and performs remediation, in this order per
//! file: vault write → audit → backup → atomic rewrite → audit. A file is never
//! rewritten unless every value taken out of it is already in the vault.
//!
//! Backups (`<state>/backups/<ID>/`, dir 0700, files 0600) hold each rewritten file
//! with the moved values *cut out*; `--undo ID` puts them back from the vault. So the
//! state directory never holds a moved secret in plaintext.
//!
//! Exit codes are the scanner contract (pre-commit, CI), not the rest of the CLI's:
//! 0 clean (or everything fixed), 1 findings left, 2 any error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use airlock_scan::{Finding, ScanOptions, ScanReport, Scanner, Source};
use airlock_state::StateDir;
use airlock_types::{Environment, Name, Tier};
use airlock_vault::{NewSecret, SecretValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::app::{CmdResult, Ctx, Failure, audit};

/// Exit code: nothing found (or everything found was fixed).
const CLEAN: u8 = 0;
/// Exit code: findings remain.
const FINDINGS: u8 = 1;
/// Exit code: any error (bad input, unreadable rule/baseline file, vault unavailable…).
const ERROR: u8 = 2;

/// The reference left where a moved value was.
pub const REFERENCE_PREFIX: &str = "airlock://secret/";

const EXAMPLES: &str = "\
Examples:
  airlock scan                          scan the current directory (hidden and gitignored files too)
  airlock scan src/ .env --format json  JSON report on stdout (stable fields; masked values)
  airlock scan --git-history            also every blob ever committed (reports the introducing commit)
  airlock scan --env --home             this process's environment and ~/.aws, ~/.netrc, ~/.ssh, …
  airlock scan --format sarif > airlock.sarif       for code-scanning UIs
  airlock scan --write-baseline .airlock-baseline.json   accept today's findings…
  airlock scan --baseline .airlock-baseline.json         …and fail only on new ones
  airlock scan --fix                    move each confirmed finding into the vault
  airlock scan --fix --yes --secret-env staging     move all, no questions (CI, scripts)
  airlock scan --undo 20250101T120000Z-3f9a         put the values back from the vault

Suppress one line with a comment containing `airlock:allow`.

--fix stores each value in the vault (like `airlock secret add`) and rewrites the file so the
value becomes airlock://secret/NAME, or removes the line in credential files (.netrc,
.git-credentials, .pgpass, htpasswd). NAME comes from the variable (RAILWAY_TOKEN=… →
railway_token) or the rule id, with -2, -3… on collision. A file is never rewritten when a
vault write failed. Findings in git history, environments and files outside the scanned
paths are not rewritten: rotate those credentials.

Exit codes (the scanner contract, unlike other airlock commands): 0 nothing found (or
everything fixed) · 1 findings remain · 2 error.";

/// Report formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human report grouped by file, masked values.
    Text,
    /// `{"findings": [...], "summary": {...}}` with stable fields.
    Json,
    /// SARIF 2.1.0 for code-scanning UIs.
    Sarif,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = EXAMPLES)]
pub struct ScanArgs {
    /// Files or directories to scan, hidden and gitignored files included (default: `.`, unless only --env, --env-of or --home is given).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Also scan every unique blob in the git history of the repository holding each PATH.
    #[arg(long)]
    git_history: bool,
    /// Also scan this process's environment variables.
    #[arg(long)]
    env: bool,
    /// Also scan the environment of process PID (/proc/PID/environ).
    #[arg(long, value_name = "PID")]
    env_of: Option<u32>,
    /// Also scan the well-known credential locations in $HOME (~/.aws, ~/.kube/config, ~/.netrc, ~/.git-credentials, ~/.ssh, shell histories, coding-agent state, …). `$HOME` is honoured, so a fake home can be scanned.
    #[arg(long = "home", visible_alias = "user-home")]
    user_home: bool,
    /// Extra rule file (TOML, same format as the built-in rules), repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Print raw secret values in the report (they are masked by default).
    #[arg(long)]
    show_secrets: bool,
    /// Suppress findings whose fingerprints are in this baseline file.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Write the fingerprints of every current finding to this baseline file (and suppress them).
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
    /// Skip (and count) files larger than this (bytes, or with K/M/G/KiB/MiB/GiB).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    max_file_size: u64,
    /// Never draw the progress bar (it is drawn only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,
    /// Move findings into the vault and rewrite the files (asks per finding on a terminal).
    #[arg(long)]
    fix: bool,
    /// With --fix: move every finding without asking.
    #[arg(short = 'y', long, requires = "fix")]
    yes: bool,
    /// With --fix: the environment the moved secrets belong to (asked on a terminal when absent).
    #[arg(long, value_name = "ENV", requires = "fix")]
    secret_env: Option<String>,
    /// With --fix: primary (live data) or backup (recovery copies).
    #[arg(long, value_name = "TIER", default_value = "primary", requires = "fix")]
    tier: String,
    /// With --fix: the upstream the moved secrets may be sent to (default: the vendor in the rule id, e.g. github for github-pat-classic; `unassigned` for generic rules).
    #[arg(long, value_name = "NAME", requires = "fix")]
    upstream: Option<String>,
    /// With --fix: prefix for the derived secret names.
    #[arg(long, value_name = "PREFIX", requires = "fix", default_value = "")]
    name_prefix: String,
    /// Restore the files rewritten by the --fix run with this backup id (values come back from the vault).
    #[arg(long, value_name = "BACKUP_ID", conflicts_with_all = ["fix", "paths", "git_history", "env", "env_of", "user_home", "write_baseline"])]
    undo: Option<String>,
    /// With --undo: restore even files changed since the fix (their later edits are lost).
    #[arg(long, requires = "undo")]
    force: bool,
    /// List the --fix backups that --undo can restore.
    #[arg(long, conflicts_with_all = ["fix", "undo", "paths"])]
    list_backups: bool,
}

/// Parse `1048576`, `512K`, `10M`, `10MiB`, `1G`.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size; use e.g. 1048576, 512K, 10M, 10MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("{s:?} has an unknown unit; use K, M or G (powers of 1024)")),
    };
    n.checked_mul(mult).filter(|v| *v > 0).ok_or_else(|| format!("{s:?} is not a positive size"))
}

/// Every failure of `airlock scan` exits 2 (the scanner contract).
pub async fn run(ctx: &Ctx, a: ScanArgs) -> CmdResult {
    let result = if let Some(id) = a.undo.clone() {
        undo(ctx, &id, a.force).await
    } else if a.list_backups {
        list_backups(ctx, a.json || a.format == Format::Json)
    } else {
        scan(ctx, a).await
    };
    result.map_err(|mut f| {
        f.code = ERROR;
        f
    })
}

fn scan_err(e: airlock_scan::Error) -> Failure {
    Failure::usage(e.to_string())
}

/// What `--fix` was told, validated before anything is scanned.
struct FixSettings {
    /// `None`: ask on the terminal, once there is something to move.
    env: Option<Environment>,
    tier: Tier,
    upstream: Option<Name>,
    prefix: String,
    ask: bool,
}

fn fix_settings(a: &ScanArgs) -> Result<Option<FixSettings>, Failure> {
    if !a.fix {
        return Ok(None);
    }
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !a.yes && !tty {
        return Err(Failure::usage("--fix asks before moving each finding, but there is no terminal to ask on")
            .hint("pass --yes to move every finding without asking (and --secret-env ENV)"));
    }
    let env = match &a.secret_env {
        Some(e) => Some(parse_env(e)?),
        None if tty => None,
        None => {
            return Err(Failure::usage("--fix without a terminal needs --secret-env ENV: the environment the moved secrets belong to")
                .hint("e.g. airlock scan --fix --yes --secret-env staging"));
        }
    };
    let tier: Tier = a.tier.parse().map_err(|e: airlock_types::Error| Failure::usage(e.to_string()))?;
    let upstream = a.upstream.as_deref().map(|u| Name::parse("upstream", u)).transpose().map_err(|e| Failure::usage(e.to_string()))?;
    if !a.name_prefix.is_empty() {
        Name::parse("--name-prefix", &a.name_prefix).map_err(|e| Failure::usage(e.to_string()))?;
        if a.name_prefix.len() > 32 {
            return Err(Failure::usage("--name-prefix is longer than 32 characters"));
        }
    }
    Ok(Some(FixSettings { env, tier, upstream, prefix: a.name_prefix.clone(), ask: !a.yes }))
}

fn parse_env(s: &str) -> Result<Environment, Failure> {
    s.trim().parse().map_err(|e: airlock_types::Error| Failure::usage(e.to_string()))
}

fn prompt(question: &str) -> Result<String, Failure> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| Failure::usage(format!("cannot read the answer from the terminal: {e}")))?;
    Ok(line.trim().to_owned())
}

async fn scan(ctx: &Ctx, a: ScanArgs) -> CmdResult {
    let started = Instant::now();
    let format = if a.json { Format::Json } else { a.format };
    let fix = fix_settings(&a)?;
    let scanner = Scanner::with_rule_files(&a.rules).map_err(scan_err)?;
    let only_other_sources = (a.env || a.env_of.is_some() || a.user_home) && !a.git_history;
    let paths: Vec<PathBuf> = if a.paths.is_empty() && !only_other_sources { vec![PathBuf::from(".")] } else { a.paths.clone() };
    for p in &paths {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(Failure::usage(format!("{} does not exist; pass an existing file or directory", p.display())));
        }
    }
    let opts = ScanOptions::default().with_max_file_size(a.max_file_size).with_progress(!a.no_progress && std::io::stderr().is_terminal());

    let mut report = ScanReport::default();
    if !paths.is_empty() {
        report.merge(scanner.scan_paths(&paths, &opts).map_err(scan_err)?);
    }
    if a.git_history {
        let mut seen = HashSet::new();
        for p in &paths {
            let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if seen.insert(key) {
                report.merge(scanner.scan_git_history(p, &opts).map_err(scan_err)?);
            }
        }
    }
    if a.env {
        report.merge(scanner.scan_env("env", &airlock_scan::process_env()));
    }
    if let Some(pid) = a.env_of {
        let vars = airlock_scan::environ_of_pid(pid).map_err(scan_err)?;
        report.merge(scanner.scan_env(&format!("env[{pid}]"), &vars));
    }
    if a.user_home {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| Failure::usage("--home needs $HOME to be set (it scans the credential files of that home directory)"))?;
        report.merge(scanner.scan_home(&home, &opts).map_err(scan_err)?);
    }
    dedupe(&mut report.findings);

    // Baselines: --write-baseline records everything found now (pruning stale entries).
    let written: Option<HashSet<String>> = match &a.write_baseline {
        Some(path) => {
            airlock_scan::write_baseline(path, &report.findings).map_err(scan_err)?;
            Some(report.findings.iter().map(|f| f.fingerprint.clone()).collect())
        }
        None => None,
    };
    if let Some(path) = &a.baseline {
        let set = airlock_scan::read_baseline(path).map_err(scan_err)?;
        report.apply_baseline(&set);
    }
    if let Some(set) = &written {
        report.apply_baseline(set);
    }
    report.stats.elapsed = started.elapsed();

    let mut out = std::io::stdout().lock();
    let fix_result = match &fix {
        Some(settings) if !report.findings.is_empty() => {
            if format == Format::Text {
                write_report(&mut out, format, &report, a.show_secrets)?;
                out.flush().ok();
            }
            Some(fix_findings(ctx, settings, &report.findings, &paths, format == Format::Text).await?)
        }
        _ => None,
    };
    match (&fix_result, format) {
        (Some(fr), Format::Json) => {
            let mut buf = Vec::new();
            airlock_scan::write_json(&mut buf, &report, a.show_secrets).map_err(io_fail)?;
            let mut doc: Value = serde_json::from_slice(&buf).map_err(|e| Failure::internal(e.to_string()))?;
            doc["fix"] = fr.json();
            writeln!(out, "{}", serde_json::to_string_pretty(&doc).map_err(|e| Failure::internal(e.to_string()))?).map_err(io_fail)?;
        }
        (Some(_), Format::Text) => {}
        _ => write_report(&mut out, format, &report, a.show_secrets)?,
    }
    drop(out);
    let mut err = std::io::stderr().lock();
    airlock_scan::write_summary(&mut err, &report).map_err(io_fail)?;
    if let Some(path) = &a.write_baseline {
        let _ = writeln!(err, "wrote baseline {} ({} fingerprints)", path.display(), written.as_ref().map_or(0, HashSet::len));
    }
    let remaining = match &fix_result {
        Some(fr) => fr.remaining(),
        None => report.findings.len(),
    };
    if fix_result.is_none() && remaining > 0 && format == Format::Text {
        // What to do next, for the person reading the report (not for --json/--sarif).
        let _ = writeln!(
            err,
            "next: move them into the vault with `airlock scan --fix --secret-env <ENV>` (same paths), \
             suppress a false positive with an `airlock:allow` comment or `--write-baseline FILE`, \
             and rotate any credential that was ever committed or shared"
        );
    }
    Ok(ExitCode::from(if remaining == 0 { CLEAN } else { FINDINGS }))
}

fn io_fail(e: std::io::Error) -> Failure {
    Failure::internal(format!("cannot write the report: {e}"))
}

fn write_report(out: &mut dyn Write, format: Format, report: &ScanReport, show: bool) -> Result<(), Failure> {
    match format {
        Format::Text => {
            let color = airlock_scan::report::use_color(std::io::stdout().is_terminal());
            airlock_scan::write_text(out, report, color, show)
        }
        Format::Json => airlock_scan::write_json(out, report, show),
        Format::Sarif => airlock_scan::write_sarif(out, report, show),
    }
    .map_err(io_fail)
}

/// Drop repeated findings of the same bytes (a file reached both as a PATH and as a
/// home location), keeping the first in report order.
fn dedupe(findings: &mut Vec<Finding>) {
    let mut seen = HashSet::new();
    findings.retain(|f| {
        let p = if f.source == Source::Home || f.source == Source::File {
            std::fs::canonicalize(&f.path).map_or_else(|_| f.path.clone(), |p| p.display().to_string())
        } else {
            f.path.clone()
        };
        seen.insert((p, f.byte_range.start, f.byte_range.end, f.rule.clone(), f.commit.clone()))
    });
}

// ---------------------------------------------------------------------------------
// --fix
// ---------------------------------------------------------------------------------

/// What happened to one finding.
#[derive(Serialize)]
struct Outcome {
    path: String,
    line: usize,
    rule: String,
    fingerprint: String,
    /// `replaced`, `removed_line`, `declined` or `not_fixed`.
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

struct FixResult {
    outcomes: Vec<Outcome>,
    backup: Option<String>,
    environment: String,
}

impl FixResult {
    fn remaining(&self) -> usize {
        self.outcomes.iter().filter(|o| !matches!(o.action, "replaced" | "removed_line")).count()
    }
    fn json(&self) -> Value {
        json!({
            "environment": self.environment,
            "backup": self.backup,
            "undo": self.backup.as_ref().map(|b| format!("airlock scan --undo {b}")),
            "fixed": self.outcomes.len() - self.remaining(),
            "remaining": self.remaining(),
            "outcomes": self.outcomes,
        })
    }
}

/// Files whose lines are whole credentials: the line is removed rather than rewritten.
fn is_credential_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    matches!(name.as_str(), ".netrc" | "_netrc" | ".git-credentials" | ".pgpass" | ".htpasswd" | "htpasswd")
        || name.ends_with(".htpasswd")
        || path.ends_with("git/credentials")
}

/// A finding we will try to rewrite.
struct Candidate<'a> {
    f: &'a Finding,
    /// The reported path (opened for reading and rewriting).
    path: PathBuf,
}

fn advice(f: &Finding) -> String {
    match f.source {
        Source::Git => format!(
            "it is in git history (commit {}); airlock cannot rewrite history and every clone has it: rotate the credential at its issuer, then store the new one with `airlock secret add`",
            f.commit.as_deref().map_or("?", |c| &c[..c.len().min(12)])
        ),
        Source::Env => {
            let var = f.path.split_once(':').map_or(f.path.as_str(), |(_, v)| v);
            format!("it is in the environment variable {var}; stop exporting it (check your shell profile and CI settings), rotate it if it was exposed, store it with `airlock secret add`; `airlock run` scrubs it from agents")
        }
        _ => "the file is outside the scanned paths; rotate the credential, store the new one with `airlock secret add`, and delete it from the file; `airlock run` hides this location from agents".to_owned(),
    }
}

fn is_within(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

async fn fix_findings(ctx: &Ctx, s: &FixSettings, findings: &[Finding], paths: &[PathBuf], text: bool) -> Result<FixResult, Failure> {
    let roots: Vec<PathBuf> = paths.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let mut outcomes = Vec::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let say = |line: String| {
        if text {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
    };
    for f in findings {
        let rewritable = match f.source {
            Source::File => true,
            Source::Home => std::fs::canonicalize(&f.path).is_ok_and(|c| is_within(&c, &roots)),
            Source::Git | Source::Env => false,
        };
        if rewritable {
            candidates.push(Candidate { f, path: PathBuf::from(&f.path) });
        } else {
            let why = advice(f);
            say(format!("left    {} {}: {why}", location(f), f.rule));
            outcomes.push(outcome(f, "not_fixed", None, Some(why)));
        }
    }
    let mut result = FixResult { outcomes, backup: None, environment: s.env.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_default() };
    if candidates.is_empty() {
        summarise(&result, &say);
        return Ok(result);
    }

    let env = match &s.env {
        Some(e) => e.clone(),
        None => parse_env(&prompt("environment the moved secrets belong to (e.g. staging, production): ")?)?,
    };
    result.environment = env.as_str().to_owned();
    // The vault first: nothing is asked or rewritten when it cannot be opened.
    let state = ctx.checked_state()?;
    let store = ctx.store(&state).await?;
    let vault = ctx.vault(&state, store.clone()).await?;
    let mut taken: HashSet<String> = vault.list().await?.into_iter().filter(|m| m.environment == env.as_str()).map(|m| m.name).collect();

    // Group by file, in report order.
    let mut by_file: BTreeMap<PathBuf, Vec<Candidate<'_>>> = BTreeMap::new();
    for c in candidates {
        by_file.entry(c.path.clone()).or_default().push(c);
    }
    // value hash → name, so one value found twice is stored once.
    let mut stored: HashMap<[u8; 32], String> = HashMap::new();
    let mut backup: Option<Backup> = None;
    let mut ask = s.ask;
    let mut quit = false;
    for (path, cands) in by_file {
        let refuse = |result: &mut FixResult, cands: &[Candidate<'_>], why: String| {
            for c in cands {
                say(format!("left    {}:{} {}: {why}", c.f.path, c.f.line, c.f.rule));
                result.outcomes.push(outcome(c.f, "not_fixed", None, Some(why.clone())));
            }
        };
        if quit {
            for c in &cands {
                result.outcomes.push(outcome(c.f, "declined", None, None));
            }
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                refuse(&mut result, &cands, format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        // A symlink: rewrite its target when that is inside the scanned paths (the link
        // stays a link); otherwise leave it.
        let (path, meta) = if meta.file_type().is_symlink() {
            match std::fs::canonicalize(&path).and_then(|t| std::fs::symlink_metadata(&t).map(|m| (t, m))) {
                Ok((target, m)) if is_within(&target, &roots) && m.is_file() => (target, m),
                _ => {
                    let target = std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default();
                    refuse(
                        &mut result,
                        &cands,
                        format!("{} is a symlink to {target}, outside the scanned paths; scan and fix the target itself", path.display()),
                    );
                    continue;
                }
            }
        } else {
            (path, meta)
        };
        let data = match std::fs::read(&path) {
            Ok(d) => Zeroizing::new(d),
            Err(e) => {
                refuse(&mut result, &cands, format!("cannot read {}: {e}", path.display()));
                continue;
            }
        };
        let remove_lines = is_credential_file(&path);
        // Decide, derive names, check the bytes are still what was scanned.
        let mut chosen: Vec<(usize, std::ops::Range<usize>, String)> = Vec::new(); // (cand idx, range, name)
        let mut covered: Vec<std::ops::Range<usize>> = Vec::new();
        let mut pending_names: HashMap<[u8; 32], String> = HashMap::new();
        for (i, c) in cands.iter().enumerate() {
            let r = c.f.byte_range.clone();
            let still = data.get(r.clone()).is_some_and(|b| airlock_scan::fingerprint(&c.f.rule, b) == c.f.fingerprint);
            if !still {
                refuse(&mut result, std::slice::from_ref(c), format!("{} changed since it was scanned; scan again", path.display()));
                continue;
            }
            if covered.iter().any(|o| o.start < r.end && r.start < o.end) {
                // Another finding on the same bytes is moved already.
                if covered.contains(&r) {
                    let verb = if remove_lines { "removed" } else { "moved  " };
                    say(format!("{verb} {} {}: same value as the finding above", location(c.f), c.f.rule));
                    let name = chosen.iter().find(|(_, cr, _)| *cr == r).map(|(_, _, n)| n.clone());
                    result.outcomes.push(outcome(
                        c.f,
                        if remove_lines { "removed_line" } else { "replaced" },
                        name,
                        Some("same value as the previous finding".to_owned()),
                    ));
                } else {
                    refuse(&mut result, std::slice::from_ref(c), "overlaps another finding that is moved; scan again after this fix".to_owned());
                }
                continue;
            }
            let value_hash: [u8; 32] = Sha256::digest(&data[r.clone()]).into();
            let name = match stored.get(&value_hash).or_else(|| pending_names.get(&value_hash)) {
                Some(n) => n.clone(),
                None => {
                    let n = unique_name(&s.prefix, &base_name(c.f, &data), &taken);
                    taken.insert(n.clone());
                    n
                }
            };
            if ask {
                let q = format!(
                    "move {} at {}:{} ({}) into the vault as {name}{}? [y]es/[n]o/[a]ll/[q]uit: ",
                    c.f.rule,
                    c.f.path,
                    c.f.line,
                    c.f.masked,
                    if remove_lines { " and remove the line" } else { "" }
                );
                match prompt(&q)?.to_ascii_lowercase().as_str() {
                    "y" | "yes" => {}
                    "a" | "all" => ask = false,
                    "q" | "quit" => {
                        quit = true;
                    }
                    _ => {
                        result.outcomes.push(outcome(c.f, "declined", None, None));
                        continue;
                    }
                }
                if quit {
                    for rest in &cands[i..] {
                        result.outcomes.push(outcome(rest.f, "declined", None, None));
                    }
                    break;
                }
            }
            pending_names.insert(value_hash, name.clone());
            covered.push(r.clone());
            chosen.push((i, r, name));
        }
        if chosen.is_empty() {
            continue;
        }

        // 1. Vault writes. Any failure: stop, and leave this file exactly as it is.
        let mut refs: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        for (i, r, name) in &chosen {
            let f = cands[*i].f;
            let value_hash: [u8; 32] = Sha256::digest(&data[r.clone()]).into();
            if !stored.contains_key(&value_hash) {
                let upstream = match &s.upstream {
                    Some(u) => u.clone(),
                    None => derived_upstream(f),
                };
                let spec = NewSecret {
                    name: Name::parse("secret", name).map_err(|e| Failure::internal(e.to_string()))?,
                    environment: env.clone(),
                    tier: s.tier,
                    upstream,
                    description: Some(format!("moved by airlock scan --fix from {}:{} ({})", f.path, f.line, f.rule)),
                };
                let value = SecretValue::new(Zeroizing::new(data[r.clone()].to_vec()));
                let meta = match vault.add(&spec, &value).await {
                    Ok(m) => m,
                    Err(e) => {
                        let fail: Failure = e.into();
                        let done: Vec<&String> = stored.values().collect();
                        return Err(Failure::new(
                            ERROR,
                            fail.kind,
                            format!("could not store {} from {}:{} in the vault: {}; {} was not rewritten", name, f.path, f.line, fail.message, path.display()),
                        )
                        .hint(if done.is_empty() {
                            "nothing was rewritten".to_owned()
                        } else {
                            format!(
                                "already moved in this run: {}{}",
                                join(&done),
                                result.backup.as_ref().map(|b| format!(" (undo with `airlock scan --undo {b}`)")).unwrap_or_default()
                            )
                        }));
                    }
                };
                audit(
                    &*store,
                    "secret.add",
                    &meta.name,
                    "ok",
                    None,
                    json!({
                        "environment": meta.environment, "tier": meta.tier, "upstream": meta.upstream, "version": meta.version,
                        "via": "scan --fix", "path": f.path, "line": f.line, "rule": f.rule,
                    }),
                )
                .await?;
                stored.insert(value_hash, name.clone());
            }
            refs.push((r.clone(), name.clone()));
        }

        // 2. Backup (values cut out) — before the file changes.
        let (new_data, template, holes) = rewrite(&data, &refs, remove_lines);
        if backup.is_none() {
            let b = Backup::create(&state)?;
            result.backup = Some(b.manifest.id.clone());
            backup = Some(b);
        }
        let b = backup.as_mut().expect("created above");
        let abs = std::fs::canonicalize(&path).map_err(|e| Failure::internal(format!("cannot resolve {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o7777;
        b.add_file(&abs, mode, &data, &new_data, &template, holes, env.as_str())?;

        // 3. Atomic rewrite.
        atomic_write(&path, &new_data, mode)
            .map_err(|e| Failure::internal(format!("the values from {} are in the vault, but the file could not be rewritten: {e}", path.display())))?;

        // 4. Audit and report.
        for (i, _, name) in &chosen {
            let f = cands[*i].f;
            let action = if remove_lines { "removed_line" } else { "replaced" };
            audit(
                &*store,
                "scan.fix",
                name,
                "ok",
                None,
                json!({
                    "path": abs.display().to_string(), "line": f.line, "rule": f.rule, "fingerprint": f.fingerprint,
                    "action": action, "environment": env.as_str(), "backup": b.manifest.id,
                }),
            )
            .await?;
            if remove_lines {
                say(format!("removed {}:{} {}: line removed; value stored as {name} (env {env})", f.path, f.line, f.rule));
            } else {
                say(format!("moved   {}:{} {} → {REFERENCE_PREFIX}{name} (env {env})", f.path, f.line, f.rule));
            }
            result.outcomes.push(outcome(f, action, Some(name.clone()), None));
        }
    }
    summarise(&result, &say);
    Ok(result)
}

/// The closing lines: `fixed N of M findings`, and the backup id with how to undo.
fn summarise(result: &FixResult, say: &dyn Fn(String)) {
    let fixed = result.outcomes.len() - result.remaining();
    let total = result.outcomes.len();
    say(format!("fixed {fixed} of {total} finding{}", if total == 1 { "" } else { "s" }));
    if let Some(b) = &result.backup {
        say(format!("backup {b}: undo with `airlock scan --undo {b}` (the secrets stay in the vault)"));
    }
}

/// `path:line` for files and blobs, the pseudo-path alone for environment variables.
fn location(f: &Finding) -> String {
    if f.source == Source::Env { f.path.clone() } else { format!("{}:{}", f.path, f.line) }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn outcome(f: &Finding, action: &'static str, name: Option<String>, reason: Option<String>) -> Outcome {
    Outcome { path: f.path.clone(), line: f.line, rule: f.rule.clone(), fingerprint: f.fingerprint.clone(), action, name, reason }
}

/// The upstream a moved secret is bound to when `--upstream` is not given: the vendor
/// (first word) of a vendor rule's id; `unassigned` for generic and credential-file rules.
fn derived_upstream(f: &Finding) -> Name {
    let first = f.rule.split(['-', '_', '.']).next().unwrap_or("");
    let generic = [
        "generic",
        "netrc",
        "git",
        "pgpass",
        "htpasswd",
        "private",
        "pem",
        "openssh",
        "putty",
        "age",
        "jwt",
        "password",
        "connection",
        "url",
        "basic",
        "bearer",
    ];
    let n = if first.is_empty() || generic.contains(&first) { "unassigned" } else { first };
    Name::parse("upstream", n).unwrap_or_else(|_| Name::parse("upstream", "unassigned").expect("valid name"))
}

/// The assignment key a value is bound to on its line (`RAILWAY_TOKEN=…`,
/// `"api_key": "…"`, `password: …`, `export X=…`), if any.
fn assignment_key(line: &[u8], value_at: usize) -> Option<String> {
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let before = &line[..value_at];
    // Line-start form: [export] KEY [:=]
    let mut i = before.iter().take_while(|b| b.is_ascii_whitespace()).count();
    if before[i..].starts_with(b"export ") {
        i += 7;
        i += before[i..].iter().take_while(|b| b.is_ascii_whitespace()).count();
    }
    if matches!(before.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    let start = i;
    while i < before.len() && is_ident(before[i]) {
        i += 1;
    }
    if i > start && (before[start].is_ascii_alphabetic() || before[start] == b'_') {
        let key = &before[start..i];
        let mut j = i;
        if matches!(before.get(j), Some(b'"' | b'\'')) {
            j += 1;
        }
        j += before[j..].iter().take_while(|b| b.is_ascii_whitespace()).count();
        if matches!(before.get(j), Some(b'=' | b':')) {
            return Some(String::from_utf8_lossy(key).into_owned());
        }
    }
    // Nearest form: … KEY [:=] ["'] value
    let mut j = before.len();
    while j > 0 && matches!(before[j - 1], b'"' | b'\'' | b' ' | b'\t') {
        j -= 1;
    }
    if j == 0 || !matches!(before[j - 1], b'=' | b':') {
        return None;
    }
    j -= 1;
    while j > 0 && matches!(before[j - 1], b'"' | b'\'' | b' ' | b'\t') {
        j -= 1;
    }
    let end = j;
    while j > 0 && is_ident(before[j - 1]) {
        j -= 1;
    }
    (end > j).then(|| String::from_utf8_lossy(&before[j..end]).into_owned())
}

/// Lower-case, keep `[a-z0-9._-]` (others become `_`), start alphanumeric, ≤ 48 chars.
fn normalise(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }
        })
        .collect();
    let t = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric()).trim_end_matches(['.', '_', '-']);
    t.chars().take(48).collect::<String>().trim_end_matches(['.', '_', '-']).to_owned()
}

/// The deterministic base name for a finding: its assignment key, else its rule id.
fn base_name(f: &Finding, data: &[u8]) -> String {
    let at = f.byte_range.start;
    let line_start = data[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let key = assignment_key(&data[line_start..], at - line_start).map(|k| normalise(&k)).filter(|k| !k.is_empty());
    key.unwrap_or_else(|| {
        let n = normalise(&f.rule);
        if n.is_empty() { "secret".to_owned() } else { n }
    })
}

/// `prefix + base`, or with `-2`, `-3`, … when taken.
fn unique_name(prefix: &str, base: &str, taken: &HashSet<String>) -> String {
    let first = format!("{prefix}{base}");
    if !taken.contains(&first) {
        return first;
    }
    (2u32..).map(|n| format!("{prefix}{base}-{n}")).find(|c| !taken.contains(c)).expect("some suffix is free")
}

/// Apply the edits. Returns (new file, backup template with the values cut out,
/// hole offsets in the template with the secret name filling each).
fn rewrite(data: &[u8], refs: &[(std::ops::Range<usize>, String)], remove_lines: bool) -> (Vec<u8>, Vec<u8>, Vec<Hole>) {
    let mut refs: Vec<&(std::ops::Range<usize>, String)> = refs.iter().collect();
    refs.sort_by_key(|(r, _)| r.start);
    // Template: the original with each value cut out.
    let mut template = Vec::with_capacity(data.len());
    let mut holes = Vec::new();
    let mut prev = 0;
    for (r, name) in &refs {
        template.extend_from_slice(&data[prev..r.start]);
        holes.push(Hole { offset: template.len(), name: name.clone() });
        prev = r.end;
    }
    template.extend_from_slice(&data[prev..]);
    // New content.
    let mut out = Vec::with_capacity(data.len());
    let mut prev = 0;
    for (r, name) in &refs {
        if remove_lines {
            let ls = data[..r.start].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let le = data[r.end..].iter().position(|&b| b == b'\n').map_or(data.len(), |i| r.end + i + 1);
            if ls < prev {
                // Same line as the previous edit: already removed.
                continue;
            }
            out.extend_from_slice(&data[prev..ls]);
            prev = le;
        } else {
            out.extend_from_slice(&data[prev..r.start]);
            out.extend_from_slice(REFERENCE_PREFIX.as_bytes());
            out.extend_from_slice(name.as_bytes());
            prev = r.end;
        }
    }
    out.extend_from_slice(&data[prev..]);
    (out, template, holes)
}

/// Write `data` to `path` via a temporary file in the same directory and a rename,
/// with permission bits `mode`.
fn atomic_write(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".airlock-fix-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Backups and --undo
// ---------------------------------------------------------------------------------

const MANIFEST: &str = "manifest.json";

#[derive(Serialize, Deserialize, Clone)]
struct Hole {
    /// Byte offset in the template where the value goes.
    offset: usize,
    /// The vault secret holding the value.
    name: String,
}

#[derive(Serialize, Deserialize)]
struct BackupFile {
    /// Absolute path of the rewritten file.
    path: String,
    /// The template's file name inside the backup directory.
    blob: String,
    /// Permission bits of the original.
    mode: u32,
    /// SHA-256 of the original (checked after reconstruction).
    original_sha256: String,
    /// SHA-256 of the rewritten file (undo refuses if the file changed since, unless --force).
    rewritten_sha256: String,
    /// Environment of the vault secrets filling the holes.
    environment: String,
    holes: Vec<Hole>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    id: String,
    created_at: String,
    files: Vec<BackupFile>,
}

struct Backup {
    dir: PathBuf,
    manifest: Manifest,
}

fn backups_dir(state: &StateDir) -> PathBuf {
    state.root().join("backups")
}

fn private_dir(p: &Path) -> Result<(), Failure> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p).map_err(|e| Failure::internal(format!("cannot create {}: {e}", p.display())))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Failure::internal(format!("cannot set permissions on {}: {e}", p.display())))
}

fn write_private(p: &Path, data: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::internal(format!("cannot write the backup {}: {e}", p.display()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(p).map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Backup {
    fn create(state: &StateDir) -> Result<Self, Failure> {
        use rand_core::{OsRng, RngCore};
        let root = backups_dir(state);
        private_dir(&root)?;
        let now = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let stamp = now.format(fmt).map_err(|e| Failure::internal(e.to_string()))?;
        let mut r = [0u8; 2];
        OsRng.fill_bytes(&mut r);
        let id = format!("{stamp}-{}", hex::encode(r));
        let dir = root.join(&id);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| Failure::internal(format!("cannot create {}: {e}", dir.display())))?;
        let created_at = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let b = Self { dir, manifest: Manifest { version: 1, id, created_at, files: Vec::new() } };
        b.save()?;
        Ok(b)
    }

    #[allow(clippy::too_many_arguments)]
    fn add_file(&mut self, abs: &Path, mode: u32, original: &[u8], rewritten: &[u8], template: &[u8], holes: Vec<Hole>, env: &str) -> Result<(), Failure> {
        let blob = format!("{:04}.template", self.manifest.files.len() + 1);
        write_private(&self.dir.join(&blob), template)?;
        self.manifest.files.push(BackupFile {
            path: abs.display().to_string(),
            blob,
            mode,
            original_sha256: hex_sha256(original),
            rewritten_sha256: hex_sha256(rewritten),
            environment: env.to_owned(),
            holes,
        });
        self.save()
    }

    /// Replace the manifest atomically (it is rewritten after each file).
    fn save(&self) -> Result<(), Failure> {
        let text = serde_json::to_vec_pretty(&self.manifest).map_err(|e| Failure::internal(e.to_string()))?;
        atomic_write(&self.dir.join(MANIFEST), &text, 0o600)
            .map_err(|e| Failure::internal(format!("cannot write the backup manifest in {}: {e}", self.dir.display())))
    }
}

fn valid_backup_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn read_manifest(dir: &Path) -> Result<Manifest, Failure> {
    let text = std::fs::read(dir.join(MANIFEST)).map_err(|e| Failure::usage(format!("cannot read the backup manifest in {}: {e}", dir.display())))?;
    serde_json::from_slice(&text).map_err(|e| Failure::usage(format!("backup manifest in {} is invalid: {e}", dir.display())))
}

async fn undo(ctx: &Ctx, id: &str, force: bool) -> CmdResult {
    if !valid_backup_id(id) {
        return Err(Failure::usage(format!("{id:?} is not a backup id")).hint("list backups with `airlock scan --list-backups`"));
    }
    let state = ctx.checked_state()?;
    let dir = backups_dir(&state).join(id);
    if !dir.is_dir() {
        return Err(Failure::usage(format!("no backup {id} in {}", backups_dir(&state).display())).hint("list backups with `airlock scan --list-backups`"));
    }
    let manifest = read_manifest(&dir)?;
    let store = ctx.store(&state).await?;
    let vault = ctx.vault(&state, store.clone()).await?;
    let mut refused = Vec::new();
    let mut names: Vec<(String, String)> = Vec::new();
    for f in &manifest.files {
        let path = Path::new(&f.path);
        let current = std::fs::read(path).ok().map(Zeroizing::new);
        if let Some(cur) = &current {
            let h = hex_sha256(cur);
            if h == f.original_sha256 {
                println!("already restored {}", f.path);
                continue;
            }
            if h != f.rewritten_sha256 && !force {
                eprintln!("{} changed since the fix; not restoring it (pass --force to overwrite the later edits)", f.path);
                refused.push(f.path.clone());
                continue;
            }
        } else if !force {
            eprintln!("{} no longer exists; not restoring it (pass --force to recreate it)", f.path);
            refused.push(f.path.clone());
            continue;
        }
        let template = std::fs::read(dir.join(&f.blob)).map_err(|e| Failure::internal(format!("cannot read the backup of {}: {e}", f.path)))?;
        let env: Environment = f.environment.parse().map_err(|e: airlock_types::Error| Failure::internal(e.to_string()))?;
        let mut original = Zeroizing::new(Vec::with_capacity(template.len() + 64));
        let mut prev = 0;
        for h in &f.holes {
            if h.offset < prev || h.offset > template.len() {
                return Err(Failure::internal(format!("backup {id} is corrupt (hole offsets for {})", f.path)));
            }
            original.extend_from_slice(&template[prev..h.offset]);
            let secret = vault.get(&h.name, Some(&env)).await.map_err(|e| {
                let fail: Failure = e.into();
                Failure::new(ERROR, fail.kind, format!("cannot restore {}: {}", f.path, fail.message))
                    .hint(format!("the value was stored as secret {} in environment {}; undo needs it", h.name, f.environment))
            })?;
            original.extend_from_slice(secret.value.expose());
            prev = h.offset;
        }
        original.extend_from_slice(&template[prev..]);
        if hex_sha256(&original) != f.original_sha256 {
            return Err(Failure::internal(format!(
                "the reconstructed {} does not match the original (was a moved secret rotated?); nothing written for it",
                f.path
            )));
        }
        atomic_write(path, &original, f.mode).map_err(|e| Failure::internal(format!("cannot restore {}: {e}", f.path)))?;
        audit(&*store, "scan.undo", id, "ok", None, json!({ "path": f.path, "secrets": f.holes.iter().map(|h| &h.name).collect::<Vec<_>>() })).await?;
        println!("restored {}", f.path);
        for h in &f.holes {
            let pair = (h.name.clone(), f.environment.clone());
            if !names.contains(&pair) {
                names.push(pair);
            }
        }
    }
    if !names.is_empty() {
        println!(
            "the moved secrets stay in the vault; remove them if no longer needed: {}",
            names.iter().map(|(n, e)| format!("airlock secret rm {n} --env {e}")).collect::<Vec<_>>().join("; ")
        );
    }
    if refused.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::usage(format!("not restored (changed or missing since the fix): {}", refused.join(", ")))
            .hint(format!("airlock scan --undo {id} --force restores them anyway")))
    }
}

fn list_backups(ctx: &Ctx, as_json: bool) -> CmdResult {
    let state = ctx.checked_state()?;
    let root = backups_dir(&state);
    let mut ids: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_backup_id(n))
        .collect();
    ids.sort();
    let mut rows = Vec::new();
    for id in ids {
        let Ok(m) = read_manifest(&root.join(&id)) else { continue };
        rows.push(json!({ "id": m.id, "created_at": m.created_at, "files": m.files.iter().map(|f| &f.path).collect::<Vec<_>>() }));
    }
    if as_json {
        crate::app::print_json(&rows);
    } else if rows.is_empty() {
        println!("no scan --fix backups in {}", root.display());
    } else {
        for r in &rows {
            let files: Vec<&str> = r["files"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!("{}  {}  {}", r["id"].as_str().unwrap_or(""), r["created_at"].as_str().unwrap_or(""), files.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k = |l: &str, v: &str| assignment_key(l.as_bytes(), l.find(v).unwrap());
        assert_eq!(k("RAILWAY_TOKEN=abc123", "abc").as_deref(), Some("RAILWAY_TOKEN"));
        assert_eq!(k("export GH_TOKEN=\"abc123\"", "abc").as_deref(), Some("GH_TOKEN"));
        assert_eq!(k("  \"api_key\": \"abc123\",", "abc").as_deref(), Some("api_key"));
        assert_eq!(k("password: abc123", "abc").as_deref(), Some("password"));
        assert_eq!(k("DATABASE_URL=postgres://app:abc123@db/x", "abc123").as_deref(), Some("DATABASE_URL"));
        assert_eq!(k("//registry.npmjs.org/:_authToken=abc123", "abc").as_deref(), Some("_authToken"));
        assert_eq!(k("token abc123", "abc"), None);
    }

    #[test]
    fn names() {
        assert_eq!(normalise("RAILWAY_TOKEN"), "railway_token");
        assert_eq!(normalise("_authToken"), "authtoken");
        assert_eq!(normalise("a b/c"), "a_b_c");
        let taken: HashSet<String> = ["x".to_owned(), "x-2".to_owned()].into();
        assert_eq!(unique_name("", "x", &taken), "x-3");
        assert_eq!(unique_name("p-", "x", &taken), "p-x");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("1T").is_err());
    }

    #[test]
    fn rewrite_and_template() {
        let data = b"A=1\nTOKEN=secretvalue\nB=2\n";
        let r = 10..21;
        assert_eq!(&data[r.clone()], b"secretvalue");
        let (new, tpl, holes) = rewrite(data, &[(r.clone(), "token".to_owned())], false);
        assert_eq!(new, b"A=1\nTOKEN=airlock://secret/token\nB=2\n");
        assert_eq!(tpl, b"A=1\nTOKEN=\nB=2\n");
        assert_eq!(holes[0].offset, 10);
        let (new, _, _) = rewrite(data, &[(r, "token".to_owned())], true);
        assert_eq!(new, b"A=1\nB=2\n");
    }
}
