//! Rules: the one authoritative check that every rule's examples behave, plus rule
//! file validation as users see it.

use airlock_scan::{Confidence, Scanner};

use crate::{GH_TOKEN, TEST_RULES, fixture, test_scanner};

/// Check every rule of `s` in isolation: each `examples_true` yields a finding of the
/// rule, each `examples_false` none. Returns the failures, one line each.
fn example_failures(s: &Scanner) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, r) in s.rules().iter().enumerate() {
        let one = s.single_rule(i).expect("a single-rule scanner builds");
        let path = r.example_path();
        if r.examples_true.is_empty() {
            failures.push(format!("{} ({}): has no examples_true", r.id, r.origin));
        }
        for ex in &r.examples_true {
            if !one.scan_bytes(&path, ex.as_bytes()).iter().any(|f| f.rule == r.id) {
                failures.push(format!("{} ({}): examples_true not found at {path}: {ex:?}", r.id, r.origin));
            }
        }
        for ex in &r.examples_false {
            if one.scan_bytes(&path, ex.as_bytes()).iter().any(|f| f.rule == r.id) {
                failures.push(format!("{} ({}): examples_false matched at {path}: {ex:?}", r.id, r.origin));
            }
        }
    }
    failures
}

#[test]
fn every_builtin_rule_examples_hold() {
    let s = Scanner::builtin().expect("built-in rules load");
    let failures = example_failures(&s);
    assert!(failures.is_empty(), "{} rule example failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_builtin_pattern_compiles() {
    // Built-in patterns are compiled lazily on first use; make sure none would fail then.
    Scanner::builtin().unwrap().compile_all().expect("every built-in pattern compiles");
}

#[test]
fn builtin_rules_are_many_and_documented() {
    let s = Scanner::builtin().unwrap();
    assert!(s.rules().len() >= 150, "only {} built-in rules", s.rules().len());
    for r in s.rules() {
        assert!(!r.description.trim().is_empty(), "{} has no description", r.id);
        assert!(!r.keywords.is_empty() || r.paths_pattern.is_some(), "{} has neither keywords nor paths", r.id);
    }
}

#[test]
fn fixture_rule_examples_hold() {
    let failures = example_failures(&test_scanner());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn user_rule_files_add_to_builtins() {
    let builtin = Scanner::builtin().unwrap().rules().len();
    let mut custom = String::from(TEST_RULES);
    custom = custom.replace("id = \"test-", "id = \"custom-").replace("id = \"generic-test-", "id = \"generic-custom-");
    let dir = tempfile::tempdir().unwrap();
    let p = crate::put(dir.path(), "custom.toml", custom);
    let s = Scanner::with_rule_files(&[p]).unwrap();
    assert_eq!(s.rules().len(), builtin + test_scanner().rules().len());
    assert!(s.rules().iter().any(|r| r.id == "custom-netrc"));
}

#[test]
fn checksum_valid_tokens_are_high_confidence_and_invalid_ones_dropped() {
    let s = test_scanner();
    let f = s.scan_bytes("a.txt", format!("token: {GH_TOKEN}").as_bytes());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].confidence, Confidence::High);
    // one character changed: the CRC32 no longer matches
    let bad = GH_TOKEN.replace("l35y", "l45y");
    assert!(s.scan_bytes("a.txt", bad.as_bytes()).is_empty());
}

#[test]
fn bad_rule_files_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // TOML syntax error on line 3
    let p = crate::put(dir.path(), "syntax.toml", "[[rule]]\nid = \"x\"\ndescription = \n");
    let e = Scanner::with_rule_files(&[p]).unwrap_err().to_string();
    assert!(e.contains("syntax.toml") && e.contains("line 3"), "{e}");
    // a regex that does not compile, in the second rule (line 9)
    let text = "[[rule]]\nid = \"ok\"\ndescription = \"d\"\nkeywords = [\"k\"]\nregex = 'k[0-9]+'\nconfidence = \"low\"\n\n[[rule]]\nid = \"broken\"\ndescription = \"d\"\nkeywords = [\"k\"]\nregex = 'k[0-9'\nconfidence = \"low\"\n";
    let p = crate::put(dir.path(), "regex.toml", text);
    let e = Scanner::with_rule_files(&[p]).unwrap_err().to_string();
    assert!(e.contains("regex.toml:9") && e.contains("broken") && e.contains("does not compile"), "{e}");
    // valid syntax, but over the compiled-size limit: a user's rules compile at load (not
    // lazily), so this is an error naming the file and rule, not a rule that never matches
    let text = "[[rule]]\nid = \"huge\"\ndescription = \"d\"\nkeywords = [\"k\"]\nregex = '(?:(?:k[0-9a-z]{1000}){1000}){100}'\nconfidence = \"low\"\n";
    let p = crate::put(dir.path(), "huge.toml", text);
    let e = Scanner::with_rule_files(&[p]).unwrap_err().to_string();
    assert!(e.contains("huge.toml") && e.contains("huge") && e.contains("does not compile"), "{e}");
    // a missing file
    let e = Scanner::with_rule_files(&[dir.path().join("nope.toml")]).unwrap_err().to_string();
    assert!(e.contains("nope.toml"), "{e}");
    // duplicate of a built-in id
    let p = crate::put(dir.path(), "dup.toml", TEST_RULES);
    let dup = Scanner::with_rule_files(&[p.clone(), p]).unwrap_err().to_string();
    assert!(dup.contains("already defined"), "{dup}");
    assert!(fixture("test-rules.toml").exists());
}
