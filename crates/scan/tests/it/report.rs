//! Reporters (text, JSON, SARIF), masking, baselines and inline suppression.

use std::collections::{BTreeSet, HashSet};

use airlock_scan::{ScanOptions, ScanReport};
use serde_json::Value;

use crate::{GH_TOKEN, fixture, put, test_scanner};

const PG_PASSWORD: &str = "Tr0ub4dor3x";

fn sample() -> (tempfile::TempDir, ScanReport) {
    let d = tempfile::tempdir().unwrap();
    put(d.path(), "app/.env", format!("GITHUB_TOKEN={GH_TOKEN}\nDATABASE_URL=postgres://app:{PG_PASSWORD}@db:5432/app\n"));
    put(d.path(), "dir with space/é.txt", format!("token {GH_TOKEN}\n"));
    put(d.path(), "home/.netrc", "machine h login me password n3trcPassw0rd\n");
    let r = test_scanner().scan_paths(&[d.path().to_path_buf()], &ScanOptions::default()).unwrap();
    assert_eq!(r.findings.len(), 4);
    (d, r)
}

fn render(f: impl Fn(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn assert_no_raw(s: &str) {
    for raw in [GH_TOKEN, PG_PASSWORD, "n3trcPassw0rd"] {
        assert!(!s.contains(raw), "raw secret {raw} leaked:\n{s}");
    }
}

#[test]
fn json_has_stable_fields_and_masked_values_only() {
    let (_d, r) = sample();
    let text = render(|w| airlock_scan::write_json(w, &r, false));
    assert_no_raw(&text);
    let v: Value = serde_json::from_str(&text).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4);
    let want: BTreeSet<&str> = ["rule", "description", "path", "line", "column", "confidence", "fingerprint", "masked", "commit", "source"].into();
    for f in findings {
        let keys: BTreeSet<&str> = f.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, want);
        assert_eq!(f["fingerprint"].as_str().unwrap().len(), 32);
    }
    let gh = findings.iter().find(|f| f["rule"] == "test-github-pat" && f["path"].as_str().unwrap().ends_with(".env")).unwrap();
    assert_eq!(gh["masked"], "ghp_…l35y");
    assert_eq!((gh["line"].as_u64(), gh["column"].as_u64()), (Some(1), Some(14)));
    assert_eq!(gh["confidence"], "high");
    assert_eq!(gh["source"], "file");
    assert!(gh["commit"].is_null());
    let pg = findings.iter().find(|f| f["rule"] == "test-postgres-url").unwrap();
    assert_eq!(pg["masked"], "****", "short values are fully masked");
    let summary = &v["summary"];
    for k in ["files_scanned", "skipped_binary", "skipped_large", "skipped_unreadable", "bytes_scanned", "findings", "baselined", "elapsed_ms"] {
        assert!(summary[k].is_u64(), "summary.{k}");
    }
    assert_eq!(summary["findings"], 4);
}

#[test]
fn show_secrets_is_the_only_way_to_see_values() {
    let (_d, r) = sample();
    let json = render(|w| airlock_scan::write_json(w, &r, true));
    let v: Value = serde_json::from_str(&json).unwrap();
    let secrets: HashSet<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["secret"].as_str().unwrap()).collect();
    assert!(secrets.contains(GH_TOKEN) && secrets.contains(PG_PASSWORD));
    let text = render(|w| airlock_scan::write_text(w, &r, false, true));
    assert!(text.contains(GH_TOKEN));
    let sarif = render(|w| airlock_scan::write_sarif(w, &r, true));
    assert!(sarif.contains(GH_TOKEN));
    // and the Debug form of a finding never shows it
    assert_no_raw(&format!("{:?}", r.findings));
}

#[test]
fn text_is_grouped_by_file_masked_and_uncoloured_unless_asked() {
    let (d, r) = sample();
    let text = render(|w| airlock_scan::write_text(w, &r, false, false));
    assert_no_raw(&text);
    assert!(!text.contains('\x1b'));
    let root = d.path().display().to_string();
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with(&root)).collect();
    assert_eq!(headers.len(), 3, "{text}");
    assert!(text.contains("ghp_…l35y") && text.contains("test-postgres-url"));
    let coloured = render(|w| airlock_scan::write_text(w, &r, true, false));
    assert!(coloured.contains("\x1b["));
    assert!(!airlock_scan::report::use_color(false));
}

#[test]
fn sarif_validates_against_the_2_1_0_schema() {
    let (_d, r) = sample();
    let schema: Value = serde_json::from_slice(&std::fs::read(fixture("sarif-schema-2.1.0.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for report in [r.clone(), ScanReport::default()] {
        let text = render(|w| airlock_scan::write_sarif(w, &report, false));
        assert_no_raw(&text);
        let doc: Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "SARIF invalid:\n{}", errors.join("\n"));
    }
    let doc: Value = serde_json::from_str(&render(|w| airlock_scan::write_sarif(w, &r, false))).unwrap();
    let run = &doc["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), 4);
    let uris: Vec<&str> =
        run["results"].as_array().unwrap().iter().map(|x| x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap()).collect();
    assert!(uris.iter().any(|u| u.contains("dir%20with%20space/%C3%A9.txt")), "{uris:?}");
    for res in run["results"].as_array().unwrap() {
        let idx = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], res["ruleId"]);
        assert_eq!(res["partialFingerprints"]["airlockSecret/v1"].as_str().unwrap().len(), 32);
    }
}

#[test]
fn baseline_suppresses_by_fingerprint_and_round_trips() {
    let (d, mut r) = sample();
    let path = d.path().join("baseline.json");
    airlock_scan::write_baseline(&path, &r.findings[..2]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_no_raw(&text);
    let set = airlock_scan::read_baseline(&path).unwrap();
    assert_eq!(set.len(), 2);
    r.apply_baseline(&set);
    // the same token in another file has the same fingerprint: suppressed too
    let left: Vec<&str> = r.findings.iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(left, vec!["test-netrc"]);
    assert_eq!(r.stats.baselined, 3);
    let summary = render(|w| airlock_scan::write_summary(w, &r));
    assert!(summary.contains("3 suppressed by baseline"), "{summary}");
    // the fingerprint follows the secret, not the line: moving it keeps it suppressed
    let s = test_scanner();
    let a = s.scan_bytes("x.txt", format!("{GH_TOKEN}\n").as_bytes());
    let b = s.scan_bytes("y.txt", format!("\n\n  {GH_TOKEN}\n").as_bytes());
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
}

#[test]
fn bad_baselines_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        ("notjson.json", "not json", "invalid"),
        ("version.json", r#"{"version": 2, "fingerprints": []}"#, "unsupported version"),
        ("badfp.json", r#"{"version": 1, "fingerprints": ["xyz"]}"#, "not a fingerprint"),
        ("extra.json", r#"{"version": 1, "fingerprints": [], "secrets": []}"#, "unknown field"),
    ];
    for (name, text, want) in cases {
        let p = put(d.path(), name, text);
        let e = airlock_scan::read_baseline(&p).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains(name), "{e}");
    }
    let e = airlock_scan::read_baseline(&d.path().join("missing.json")).unwrap_err().to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn inline_allow_suppresses_only_its_line() {
    let s = test_scanner();
    let data = format!("a = \"{GH_TOKEN}\" # airlock:allow\nb = \"{GH_TOKEN}\"\n// airlock:allow (a comment alone suppresses nothing else)\n");
    let f = s.scan_bytes("x.py", data.as_bytes());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].line, 2);
    assert_eq!(airlock_scan::INLINE_ALLOW, "airlock:allow");
}

#[test]
fn placeholders_are_not_findings() {
    let s = test_scanner();
    for v in ["password = \"changeme\"", "secret: \"${DB_PASSWORD}\"", "passwd = '<your-password>'", "password = \"xxxxxxxx\""] {
        assert!(s.scan_bytes("c.yml", v.as_bytes()).is_empty(), "{v}");
    }
    assert_eq!(s.scan_bytes("c.yml", b"password = \"Zq8!vL2#pX9w\"").len(), 1);
}
