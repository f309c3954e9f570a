//! Rule data: parsing and validating rule TOML files into compiled rules.
//!
//! This module owns the rule file format (see the crate docs for the contract) and its
//! validation: unique ids, known checksum kinds, ASCII keywords, compilable regexes,
//! a keyword or a `paths` filter on every rule. It never scans anything and never
//! sees a secret.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::Error;

/// How sure a rule (or a finding) is that a match is a real credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// Probably noise; worth a look.
    Low,
    /// Likely a credential.
    Medium,
    /// Almost certainly a credential (distinctive format or valid checksum).
    High,
}

impl Confidence {
    /// The lowercase name used in JSON and text output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }
}

/// What to do when a rule's checksum does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumFail {
    /// Drop the match (the default).
    #[default]
    Drop,
    /// Keep it, with low confidence.
    Low,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFileToml {
    #[serde(default)]
    defaults: Option<DefaultsToml>,
    #[serde(default)]
    rule: Vec<RuleToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsToml {
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleToml {
    id: String,
    description: String,
    #[serde(default)]
    keywords: Vec<String>,
    regex: String,
    checksum: Option<String>,
    #[serde(default)]
    checksum_fail: ChecksumFail,
    confidence: Confidence,
    min_entropy: Option<f64>,
    paths: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_match: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    examples_true: Vec<String>,
    #[serde(default)]
    examples_false: Vec<String>,
}

/// One compiled detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id, e.g. `github-pat-classic`.
    pub id: String,
    /// What the rule finds, for humans.
    pub description: String,
    /// Lower-cased ASCII keywords (prefilter).
    pub keywords: Vec<String>,
    /// The pattern source as written.
    pub pattern: String,
    pub(crate) regex: LazyRegex,
    /// Whether the pattern can match across lines (then it scans the whole buffer rather
    /// than the lines around its keyword hits); see `engine::spans_lines`.
    pub(crate) spans_lines: bool,
    /// Checksum kind understood by [`crate::checksum::verify`].
    pub checksum: Option<String>,
    /// What to do with a match whose checksum fails.
    pub checksum_fail: ChecksumFail,
    /// Declared confidence.
    pub confidence: Confidence,
    /// Shannon entropy floor (bits per byte) on the secret.
    pub min_entropy: Option<f64>,
    pub(crate) paths: Option<Regex>,
    /// The `paths` pattern source, if any.
    pub paths_pattern: Option<String>,
    pub(crate) allow: Vec<LazyRegex>,
    /// Regexes on the whole match (the key and its context, not just the secret) that
    /// suppress: `BYPASS=…` for a rule whose key may end in `PASS`.
    pub(crate) allow_match: Vec<LazyRegex>,
    /// Free-form tags (`scm`, `cloud`, `generic`, …).
    pub tags: Vec<String>,
    /// Strings that must produce a finding of this rule.
    pub examples_true: Vec<String>,
    /// Strings that must not produce a finding of this rule.
    pub examples_false: Vec<String>,
    /// The file the rule came from (for error messages).
    pub origin: String,
}

impl Rule {
    /// Whether this rule applies to a file at `path` (forward slashes).
    #[must_use]
    pub fn applies_to_path(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|re| re.is_match(path.as_bytes()))
    }

    /// Whether the rule is a generic (assignment/context) rule, which yields to a
    /// specific rule that matched the same secret.
    #[must_use]
    pub fn is_generic(&self) -> bool {
        self.id.starts_with("generic") || self.tags.iter().any(|t| t == "generic")
    }

    /// Whether the rule is a generic rule tagged `context` (a credential-named variable in
    /// a file whose purpose is to hand values to programs): it yields to specific rules
    /// and the other generic rules yield to it.
    #[must_use]
    pub fn is_context(&self) -> bool {
        self.is_generic() && self.tags.iter().any(|t| t == "context")
    }

    /// A path under which the rule's examples should be scanned: `example.txt`, or a
    /// path the rule's `paths` filter accepts.
    #[must_use]
    pub fn example_path(&self) -> String {
        let Some(re) = &self.paths else { return "example.txt".to_owned() };
        for cand in EXAMPLE_PATH_CANDIDATES {
            if re.is_match(cand.as_bytes()) {
                return (*cand).to_owned();
            }
        }
        // Fall back to a path derived from the pattern text with regex syntax removed.
        let guess: String =
            self.paths_pattern.as_deref().unwrap_or_default().replace("(^|/)", "").replace("(?:^|/)", "").replace('\\', "").replace(['^', '$'], "");
        format!("home/user/{guess}")
    }
}

/// Paths tried (in order) to find one a rule's `paths` filter accepts.
const EXAMPLE_PATH_CANDIDATES: &[&str] = &[
    "home/user/.netrc",
    "home/user/_netrc",
    "home/user/.git-credentials",
    "home/user/project/.git/config",
    "home/user/.pgpass",
    "home/user/.npmrc",
    "home/user/.pypirc",
    "home/user/.aws/credentials",
    "home/user/.aws/config",
    "home/user/.docker/config.json",
    "home/user/.kube/config",
    "home/user/.config/gh/hosts.yml",
    "home/user/.config/gcloud/application_default_credentials.json",
    "home/user/.config/gcloud/credentials.db",
    "home/user/.azure/accessTokens.json",
    "home/user/.azure/msal_token_cache.json",
    "home/user/.ssh/id_rsa",
    "home/user/.ssh/id_ed25519",
    "home/user/.bash_history",
    "home/user/.zsh_history",
    "home/user/.local/share/fish/fish_history",
    "srv/www/.htpasswd",
    "etc/nginx/htpasswd",
    "app/.env",
    "app/.env.local",
    "app/config/database.yml",
    "app/settings.py",
    "app/application.properties",
    "app/terraform.tfvars",
    "app/credentials.json",
    "app/service-account.json",
    "app/id_rsa",
    "app/key.pem",
    "app/server.key",
    "app/keystore.p12",
    "app/.s3cfg",
    "app/.boto",
    "app/wp-config.php",
    "app/.mcp.json",
    "home/user/.claude.json",
    "home/user/.claude/.credentials.json",
    "home/user/.codex/auth.json",
    "home/user/.gemini/oauth_creds.json",
    "home/user/.bashrc",
    "app/deploy.sh",
    "app/Dockerfile",
    "app/.github/workflows/ci.yml",
    "app/.gitlab-ci.yml",
    "app/docker-compose.yml",
];

/// A parsed set of rules plus the shared placeholder stop-list.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules, in load order.
    pub rules: Vec<Rule>,
    /// `[defaults] allow`: applied to every rule whose confidence is not high.
    pub(crate) default_allow: Vec<Regex>,
}

/// Compile a rule pattern. Patterns are matched on bytes with ASCII semantics for
/// `\w`, `\d`, `\s` and case folding (much faster); a pattern that needs Unicode
/// (`\p{…}`) falls back to Unicode semantics.
/// A rule regex that is validated when the rule is loaded and compiled on first use.
///
/// Most rules never see their keyword in a given scan, so compiling all ~300 rule and
/// allow-list patterns up front would dominate short scans (`airlock run`'s preflight of
/// an empty workspace spent ~80 ms there). Syntax errors are still reported at load time
/// with the rule's file and line; [`RuleSet::compile_all`] forces compilation (size
/// limits) for user rule files and tests.
#[derive(Debug, Clone)]
pub(crate) struct LazyRegex {
    pattern: String,
    /// The compiled pattern, or why it failed to compile (only size limits can fail:
    /// syntax is checked in [`LazyRegex::new`]).
    cell: OnceLock<Result<Compiled, String>>,
}

/// A compiled pattern and the index of its `secret` group.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) re: Regex,
    /// Index of the capture group holding the secret, if the pattern names one (`secret`).
    pub(crate) secret_group: Option<usize>,
}

impl LazyRegex {
    /// Validate `pattern`'s syntax (as [`compile`] will read it) without compiling it;
    /// returns the parsed pattern too, for analyses that need its structure.
    fn new(pattern: &str) -> Result<(Self, regex_syntax::hir::Hir), String> {
        let parse = |unicode: bool| regex_syntax::ParserBuilder::new().unicode(unicode).utf8(false).build().parse(pattern).map_err(|e| e.to_string());
        let hir = parse(false).or_else(|_| parse(true))?;
        Ok((Self { pattern: pattern.to_owned(), cell: OnceLock::new() }, hir))
    }

    /// Compile on first call; later calls return the stored outcome.
    fn compiled(&self) -> &Result<Compiled, String> {
        self.cell.get_or_init(|| {
            compile(&self.pattern)
                .map(|re| {
                    let secret_group = re.capture_names().position(|n| n == Some("secret"));
                    Compiled { re, secret_group }
                })
                .map_err(|e| e.to_string())
        })
    }

    /// The compiled regex; `None` only if compilation failed (size limits), in which
    /// case the rule matches nothing — [`RuleSet::compile_all`] surfaces that as an error.
    pub(crate) fn get(&self) -> Option<&Compiled> {
        self.compiled().as_ref().ok()
    }

    /// Whether the (compiled) pattern matches; false if it cannot compile.
    /// The pattern source as written.
    pub(crate) fn pattern(&self) -> &str {
        &self.pattern
    }

    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        self.get().is_some_and(|c| c.re.is_match(hay))
    }

    /// Compile now, reporting a failure.
    fn force(&self) -> Result<(), String> {
        self.compiled().as_ref().map(|_| ()).map_err(Clone::clone)
    }
}

pub(crate) fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let build = |unicode: bool| RegexBuilder::new(pattern).unicode(unicode).size_limit(64 << 20).dfa_size_limit(16 << 20).build();
    build(false).or_else(|_| build(true))
}

impl RuleSet {
    /// Parse and validate one rule file; `origin` names it in errors.
    pub fn parse(origin: &str, text: &str) -> Result<Self, Error> {
        let file: RuleFileToml = toml::from_str(text).map_err(|e| Error::RuleFile { origin: origin.to_owned(), reason: e.to_string() })?;
        let mut set = Self::default();
        if let Some(d) = file.defaults {
            for a in d.allow {
                let re = compile(&a).map_err(|e| Error::Rule {
                    origin: origin.to_owned(),
                    id: "[defaults]".to_owned(),
                    reason: format!("allow pattern does not compile: {e}"),
                })?;
                set.default_allow.push(re);
            }
        }
        for r in file.rule {
            let line = id_line(text, &r.id);
            set.rules.push(compile_rule(origin, r).map_err(|e| match (e, line) {
                (Error::Rule { origin, id, reason }, Some(n)) => Error::Rule { origin: format!("{origin}:{n}"), id, reason },
                (e, _) => e,
            })?);
        }
        Ok(set)
    }

    /// Compile every rule's patterns now (they are otherwise compiled on first use) and
    /// report the first that fails, naming its file and rule.
    pub fn compile_all(&self) -> Result<(), Error> {
        for r in &self.rules {
            let err = |reason: String| Error::Rule { origin: r.origin.clone(), id: r.id.clone(), reason };
            r.regex.force().map_err(|e| err(format!("regex does not compile: {e}")))?;
            for a in &r.allow {
                a.force().map_err(|e| err(format!("allow regex {:?} does not compile: {e}", a.pattern)))?;
            }
        }
        Ok(())
    }

    /// Append another set; fails on a duplicate rule id.
    pub fn extend(&mut self, other: Self) -> Result<(), Error> {
        let mut seen: HashSet<String> = self.rules.iter().map(|r| r.id.clone()).collect();
        for r in &other.rules {
            if !seen.insert(r.id.clone()) {
                let first = self.rules.iter().find(|x| x.id == r.id).map(|x| x.origin.clone()).unwrap_or_default();
                return Err(Error::Rule {
                    origin: r.origin.clone(),
                    id: r.id.clone(),
                    reason: format!("rule id already defined in {first}; rule ids must be unique, rename one"),
                });
            }
        }
        self.rules.extend(other.rules);
        self.default_allow.extend(other.default_allow);
        Ok(())
    }
}

/// The 1-based line of the `id = "…"` key naming rule `id`, for error messages.
fn id_line(text: &str, id: &str) -> Option<usize> {
    let quoted = [format!("\"{id}\""), format!("'{id}'")];
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with("id") && t[2..].trim_start().starts_with('=') && quoted.iter().any(|q| t.contains(q.as_str()))
        })
        .map(|i| i + 1)
}

fn compile_rule(origin: &str, r: RuleToml) -> Result<Rule, Error> {
    let err = |reason: String| Error::Rule { origin: origin.to_owned(), id: r.id.clone(), reason };
    if r.id.trim().is_empty() {
        return Err(err("rule id is empty".to_owned()));
    }
    if r.keywords.is_empty() && r.paths.is_none() {
        return Err(err("rule has neither keywords nor a paths filter; add at least one keyword".to_owned()));
    }
    if let Some(k) = r.keywords.iter().find(|k| !k.is_ascii() || k.is_empty()) {
        return Err(err(format!("keyword {k:?} is empty or not ASCII; keywords must be non-empty ASCII")));
    }
    if let Some(kind) = &r.checksum
        && crate::checksum::verify(kind, "").is_none()
    {
        return Err(err(format!("unknown checksum kind {kind:?}; known kinds: {}", crate::checksum::KINDS.join(", "))));
    }
    let (regex, hir) = LazyRegex::new(&r.regex).map_err(|e| err(format!("regex does not compile: {e}")))?;
    let spans_lines = crate::engine::spans_lines(&hir);
    let paths = match &r.paths {
        Some(p) => Some(compile(p).map_err(|e| err(format!("paths regex does not compile: {e}")))?),
        None => None,
    };
    let mut allow = Vec::with_capacity(r.allow.len());
    for a in &r.allow {
        allow.push(LazyRegex::new(a).map_err(|e| err(format!("allow regex {a:?} does not compile: {e}")))?.0);
    }
    let mut allow_match = Vec::with_capacity(r.allow_match.len());
    for a in &r.allow_match {
        allow_match.push(LazyRegex::new(a).map_err(|e| err(format!("allow_match regex {a:?} does not compile: {e}")))?.0);
    }
    if let Some(m) = r.min_entropy
        && !(0.0..=8.0).contains(&m)
    {
        return Err(err(format!("min_entropy {m} is outside 0..=8 bits per byte")));
    }
    Ok(Rule {
        keywords: r.keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
        id: r.id,
        description: r.description,
        pattern: r.regex,
        regex,
        spans_lines,
        checksum: r.checksum,
        checksum_fail: r.checksum_fail,
        confidence: r.confidence,
        min_entropy: r.min_entropy,
        paths,
        paths_pattern: r.paths,
        allow,
        allow_match,
        tags: r.tags,
        examples_true: r.examples_true,
        examples_false: r.examples_false,
        origin: origin.to_owned(),
    })
}

/// Shannon entropy of `data` in bits per byte.
#[must_use]
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[defaults]
allow = ['''(?i)^changeme$''']
[[rule]]
id = "t1"
description = "d"
keywords = ["TOK_"]
regex = '''TOK_[a-z]{4}'''
confidence = "high"
"#;

    #[test]
    fn parses_and_lowercases_keywords() {
        let s = RuleSet::parse("t.toml", OK).unwrap();
        assert_eq!(s.rules.len(), 1);
        assert_eq!(s.rules[0].keywords, vec!["tok_"]);
        assert_eq!(s.default_allow.len(), 1);
    }

    #[test]
    fn rejects_bad_rules_with_id_in_message() {
        let cases = [
            (OK.replace("keywords = [\"TOK_\"]", "keywords = []"), "neither keywords"),
            (OK.replace("[a-z]{4}", "[a-z"), "does not compile"),
            (OK.replace("confidence = \"high\"", "confidence = \"high\"\nchecksum = \"nope\""), "unknown checksum"),
            (OK.replace("confidence = \"high\"", "confidence = \"high\"\ncolour = 1"), "unknown field"),
            (OK.replace("confidence = \"high\"", "confidence = \"sure\""), "unknown variant"),
            (OK.replace("\"TOK_\"", "\"TÖK\""), "not ASCII"),
        ];
        for (text, want) in cases {
            let e = RuleSet::parse("t.toml", &text).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
            assert!(e.contains("t.toml"), "{e} should name the file");
            assert!(e.contains("t.toml:") || e.contains("line "), "{e} should name the line");
        }
    }

    #[test]
    fn duplicate_ids_rejected() {
        let mut a = RuleSet::parse("a.toml", OK).unwrap();
        let b = RuleSet::parse("b.toml", OK).unwrap();
        let e = a.extend(b).unwrap_err().to_string();
        assert!(e.contains("t1") && e.contains("a.toml"), "{e}");
    }

    #[test]
    fn entropy() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn ascii_semantics_with_unicode_fallback() {
        let r = compile(r"\w+").unwrap();
        assert!(!r.is_match("é".as_bytes()));
        assert!(compile(r"\p{L}+").unwrap().is_match("é".as_bytes()));
    }
}
