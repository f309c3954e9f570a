//! Reporters: human text, JSON, SARIF 2.1.0, the summary line, the progress bar.
//!
//! This module owns output formats only. Secrets appear only masked, unless the
//! caller passes `show_secrets` (the CLI's `--show-secrets`). It never decides what
//! is a finding, and never writes anywhere but the writer it is handed (the progress
//! bar draws on stderr, only when stderr is a terminal).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};

use serde_json::json;

use crate::finding::Finding;
use crate::rules::Confidence;
use crate::{ScanReport, ScanStats};

/// Whether to colour output on a stream: only on a terminal and when `NO_COLOR` is unset
/// or empty.
#[must_use]
pub fn use_color(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }
}

/// Human report grouped by file, masked values (raw values with `show_secrets`).
pub fn write_text(w: &mut dyn Write, report: &ScanReport, color: bool, show_secrets: bool) -> io::Result<()> {
    let st = Style { on: color };
    let mut current: Option<&str> = None;
    for f in &report.findings {
        if current != Some(f.path.as_str()) {
            if current.is_some() {
                writeln!(w)?;
            }
            writeln!(w, "{}", st.paint("1", &f.path))?;
            current = Some(&f.path);
        }
        let conf = match f.confidence {
            Confidence::High => st.paint("31", "high  "),
            Confidence::Medium => st.paint("33", "medium"),
            Confidence::Low => st.paint("2", "low   "),
        };
        let value = if show_secrets { f.secret.expose().replace(['\n', '\r'], "⏎") } else { f.masked.clone() };
        write!(w, "  {:>5}:{:<4} {conf}  {}  {}", f.line, f.column, st.paint("36", &f.rule), value)?;
        if let Some(c) = &f.commit {
            write!(w, "  {}", st.paint("2", &format!("commit {}", &c[..c.len().min(12)])))?;
        }
        writeln!(w, "  {}", st.paint("2", &format!("fp:{}", &f.fingerprint[..12])))?;
    }
    Ok(())
}

/// The one-line summary.
pub fn write_summary(w: &mut dyn Write, report: &ScanReport) -> io::Result<()> {
    let s = &report.stats;
    let secs = s.elapsed.as_secs_f64();
    let mb = s.bytes_scanned as f64 / 1e6;
    let rate = if secs > 0.0 { mb / secs } else { 0.0 };
    write!(
        w,
        "scanned {} files ({mb:.1} MB) in {secs:.2}s ({rate:.0} MB/s): {} finding{}; skipped {} binary, {} large, {} unreadable",
        s.files_scanned,
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
        s.skipped_binary,
        s.skipped_large,
        s.skipped_unreadable,
    )?;
    if s.cached > 0 {
        write!(w, "; {} known clean (cache)", s.cached)?;
    }
    if s.baselined > 0 {
        write!(w, "; {} suppressed by baseline", s.baselined)?;
    }
    writeln!(w)
}

fn stats_json(s: &ScanStats, findings: usize) -> serde_json::Value {
    json!({
        "files_scanned": s.files_scanned,
        "skipped_binary": s.skipped_binary,
        "skipped_large": s.skipped_large,
        "skipped_unreadable": s.skipped_unreadable,
        "bytes_scanned": s.bytes_scanned,
        "findings": findings,
        "baselined": s.baselined,
        "elapsed_ms": s.elapsed.as_millis() as u64,
    })
}

/// JSON: `{"findings": [...], "summary": {...}}`. Finding fields: rule, description,
/// path, line, column, confidence, fingerprint, masked, commit, source, and `secret`
/// only with `show_secrets`.
pub fn write_json(w: &mut dyn Write, report: &ScanReport, show_secrets: bool) -> io::Result<()> {
    let findings: Vec<_> = report.findings.iter().map(|f| f.json(show_secrets)).collect();
    let doc = json!({ "findings": findings, "summary": stats_json(&report.stats, report.findings.len()) });
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    writeln!(w)
}

/// Percent-encode a path into a SARIF `uri` (absolute paths become `file://` URIs).
fn to_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else if b == b':' && !path.starts_with('/') && !out.contains(':') {
            // keep pseudo-path schemes like `env:NAME`
            out.push(':');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn level(c: Confidence) -> &'static str {
    match c {
        Confidence::High => "error",
        Confidence::Medium => "warning",
        Confidence::Low => "note",
    }
}

/// SARIF 2.1.0 for code-scanning UIs: one run, a rule per rule id that has findings,
/// one result per finding with `partialFingerprints`.
pub fn write_sarif(w: &mut dyn Write, report: &ScanReport, show_secrets: bool) -> io::Result<()> {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in &report.findings {
        rules.entry(&f.rule).or_insert(f);
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let rules_json: Vec<_> = rules
        .values()
        .map(|f| {
            json!({
                "id": f.rule,
                "shortDescription": { "text": f.description },
                "defaultConfiguration": { "level": "error" },
            })
        })
        .collect();
    let results: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let value = if show_secrets { f.secret.expose().to_owned() } else { f.masked.clone() };
            let mut props = json!({ "confidence": f.confidence, "source": f.source, "masked": f.masked });
            if let Some(c) = &f.commit {
                props["commit"] = json!(c);
            }
            if show_secrets {
                props["secret"] = json!(f.secret.expose());
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": index[f.rule.as_str()],
                "level": level(f.confidence),
                "message": { "text": format!("{}: {value}", f.description) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": to_uri(&f.path) },
                        "region": { "startLine": f.line, "startColumn": f.column },
                    }
                }],
                "partialFingerprints": { "airlockSecret/v1": f.fingerprint },
                "properties": props,
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "airlock",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules_json,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    writeln!(w)
}

/// A progress bar on stderr, only when asked, stderr is a terminal and there is work.
pub(crate) fn progress_bar(enabled: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !enabled || len < 2 || !io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::with_draw_target(Some(len), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} scanning {pos}/{len} {wide_bar} {eta}") {
        pb.set_style(style);
    }
    Some(pb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(to_uri("a b/c.txt"), "a%20b/c.txt");
        assert_eq!(to_uri("/root/.netrc"), "file:///root/.netrc");
        assert_eq!(to_uri("env:TOKEN"), "env:TOKEN");
        assert_eq!(to_uri("a:b:c"), "a:b%3Ac");
    }
}
