//! Loading policies: the built-in schema and defaults, operator `.cedar` files, the
//! `disable` list, and schema validation with file:line:column diagnostics.
//!
//! This module only reads the files it is given; it never evaluates a request and never
//! accepts an operator file that fails to parse or validate.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Effect, Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use serde::Deserialize;

use crate::{DEFAULT_POLICIES, Error, SCHEMA, ids};

/// Where operator policies come from and which built-in policies are switched off.
///
/// Meant to be embedded in `airlock.toml`:
///
/// ```toml
/// [policy]
/// files = ["/etc/airlock/policies"]       # .cedar files or directories of them
/// disable = ["airlock-task-expired"]      # built-in ids to switch off (rarely wise)
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Operator policy files; each a `.cedar` file or a directory whose `*.cedar` files are
    /// loaded (not recursively, in name order).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Built-in policy ids (see [`crate::ids`]) to switch off. Unknown ids are an error.
    #[serde(default)]
    pub disable: Vec<String>,
}

/// One problem found in an operator policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The id of the policy concerned, when known.
    pub policy: Option<String>,
    /// What is wrong, and where possible how to fix it.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(id) = &self.policy {
            write!(f, "policy {id:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The result of checking operator policy files against the schema.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Every `.cedar` file that was read, in load order.
    pub files: Vec<PathBuf>,
    /// Ids of the operator policies that were loaded.
    pub policies: Vec<String>,
    /// Problems that make the files unusable.
    pub errors: Vec<Diagnostic>,
    /// Problems worth a look that do not stop loading (e.g. confusable identifiers, policies
    /// that can never apply).
    pub warnings: Vec<Diagnostic>,
}

impl CheckReport {
    /// Whether the files can be used (no errors; warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "{e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        write!(f, "{} file(s), {} policy(ies), {} error(s), {} warning(s)", self.files.len(), self.policies.len(), self.errors.len(), self.warnings.len())
    }
}

/// Validate operator policy files against the schema (for `airlock policy check`).
///
/// Returns `Err` only when a path cannot be read; parse and validation problems are in the
/// returned report's `errors`, each with file, line and column.
pub fn check_files(paths: &[PathBuf]) -> Result<CheckReport, Error> {
    Ok(load(&PolicyConfig { files: paths.to_vec(), disable: Vec::new() })?.report)
}

/// Like [`check_files`], and also checks the `disable` list.
pub fn check_config(config: &PolicyConfig) -> Result<CheckReport, Error> {
    Ok(load(config)?.report)
}

/// What the engine needs from one policy beyond Cedar itself.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// The `@reason` annotation.
    pub reason: Option<String>,
    /// Whether the policy is built in.
    pub builtin: bool,
}

/// Everything loaded: policy sets split by approval, metadata and the report.
pub(crate) struct Loaded {
    pub schema: Schema,
    /// What the engine evaluates: every policy, except that each `@approval("required")`
    /// forbid appears as a permit with the same scope and conditions under the id
    /// [`APPROVAL_MARK`]`<id>` (see [`approval_id`]). One Cedar evaluation then answers both
    /// "does any ordinary rule deny?" and "which approval rules apply?".
    pub main: PolicySet,
    pub meta: HashMap<String, Meta>,
    /// Whether any policy mentions `arguments` (else argument tags are not built).
    pub uses_arguments: bool,
    pub disabled: Vec<String>,
    pub report: CheckReport,
}

/// A policy with where it came from.
struct Sourced {
    policy: Policy,
    /// Index into `texts`, or `None` for built-ins.
    file: Option<usize>,
    /// Byte offset of the policy in its file.
    offset: usize,
}

pub(crate) fn builtin_schema() -> Result<Schema, Error> {
    Schema::from_cedarschema_str(SCHEMA).map(|(schema, _warnings)| schema).map_err(|e| Error::Builtin(format!("schema: {e}")))
}

pub(crate) fn load(config: &PolicyConfig) -> Result<Loaded, Error> {
    let schema = builtin_schema()?;

    for id in &config.disable {
        if !ids::ALL.contains(&id.as_str()) {
            return Err(Error::UnknownDisable { id: id.clone(), known: ids::ALL.join(", ") });
        }
    }

    let mut report = CheckReport::default();
    let mut all: Vec<Sourced> = Vec::new();

    // Built-ins.
    let defaults = PolicySet::from_str(DEFAULT_POLICIES).map_err(|e| Error::Builtin(format!("defaults: {e}")))?;
    for (policy, _) in in_source_order(&defaults, DEFAULT_POLICIES) {
        let id = policy.annotation("id").ok_or_else(|| Error::Builtin("a built-in policy has no @id".into()))?.to_owned();
        if config.disable.contains(&id) {
            continue;
        }
        all.push(Sourced { policy: policy.new_id(PolicyId::new(&id)), file: None, offset: 0 });
    }

    // Operator files.
    let mut texts: Vec<String> = Vec::new();
    for path in expand(&config.files)? {
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        let index = texts.len();
        report.files.push(path.clone());
        texts.push(text);
        let text = &texts[index];
        match PolicySet::from_str(text) {
            Err(errs) => {
                for e in errs.iter() {
                    report.errors.push(diagnostic_at(&path, text, first_label(e), None, &describe(e)));
                }
            }
            Ok(set) => {
                for _template in set.templates() {
                    report.errors.push(diagnostic_at(
                        &path,
                        text,
                        None,
                        None,
                        "policy templates (?principal / ?resource) are not supported; write a concrete policy",
                    ));
                }
                for (policy, offset) in in_source_order(&set, text) {
                    let (line, _) = line_col(text, offset);
                    let id = match policy.annotation("id") {
                        Some(id) => id.to_owned(),
                        None => format!("{}:{line}", path.display()),
                    };
                    all.push(Sourced { policy: policy.new_id(PolicyId::new(&id)), file: Some(index), offset });
                }
            }
        }
    }

    // Per-policy checks: ids, annotations.
    let mut seen: HashSet<String> = HashSet::new();
    let mut meta = HashMap::new();
    let mut keep: Vec<Sourced> = Vec::new();
    for s in all {
        let id = s.policy.id().to_string();
        let mut problems = Vec::new();
        if s.file.is_some() && id.starts_with("airlock-") {
            problems.push(format!("policy id {id:?} is reserved: ids starting with \"airlock-\" belong to built-in policies; choose another @id"));
        }
        if !seen.insert(id.clone()) {
            problems.push(format!("duplicate policy id {id:?}: every policy needs a distinct @id"));
        }
        match s.policy.annotation("approval") {
            None => {}
            Some("required") if s.policy.effect() == Effect::Forbid => {}
            Some("required") => problems
                .push("@approval(\"required\") only applies to forbid policies (an approval lifts a forbid); remove it or make the policy a forbid".into()),
            Some(other) => problems.push(format!("unknown @approval value {other:?}: the only value is \"required\"")),
        }
        if !problems.is_empty() {
            match s.file {
                None => return Err(Error::Builtin(problems.join("; "))),
                Some(file) => {
                    for p in problems {
                        report.errors.push(diagnostic_at(&report.files[file], &texts[file], Some(s.offset), Some(&id), &p));
                    }
                    continue;
                }
            }
        }
        if s.file.is_some() {
            report.policies.push(id.clone());
        }
        meta.insert(id.clone(), Meta { reason: s.policy.annotation("reason").map(str::to_owned), builtin: s.file.is_none() });
        keep.push(s);
    }

    // Build the sets and validate everything together against the schema.
    let mut combined = PolicySet::new();
    let mut main = PolicySet::new();
    let mut origin: HashMap<String, (Option<usize>, usize)> = HashMap::new();
    let mut uses_arguments = false;
    for s in &keep {
        let id = s.policy.id().to_string();
        uses_arguments |= s.policy.to_string().contains("arguments");
        origin.insert(id.clone(), (s.file, s.offset));
        combined.add(s.policy.clone()).map_err(|e| Error::Builtin(format!("policy set: {e}")))?;
        let evaluated = if s.policy.annotation("approval") == Some("required") { as_approval_marker(&s.policy)? } else { s.policy.clone() };
        main.add(evaluated).map_err(|e| Error::Builtin(format!("policy set: {e}")))?;
    }

    let result = Validator::new(schema.clone()).validate(&combined, ValidationMode::Strict);
    for e in result.validation_errors() {
        let id = e.policy_id().to_string();
        match origin.get(&id) {
            Some((Some(file), offset)) => {
                let at = first_label(e).or(Some(*offset));
                report.errors.push(diagnostic_at(&report.files[*file], &texts[*file], at, Some(&id), &describe(e)));
            }
            _ => return Err(Error::Builtin(format!("policy {id:?} fails validation: {e}"))),
        }
    }
    for w in result.validation_warnings() {
        let id = w.policy_id().to_string();
        if let Some((Some(file), offset)) = origin.get(&id) {
            let at = first_label(w).or(Some(*offset));
            report.warnings.push(diagnostic_at(&report.files[*file], &texts[*file], at, Some(&id), &describe(w)));
        }
    }

    Ok(Loaded { schema, main, meta, uses_arguments, disabled: config.disable.clone(), report })
}

/// Prefix of the evaluated id of an approval rule. Operator ids cannot start with
/// `airlock-`, so a marker never collides with a real policy id.
pub(crate) const APPROVAL_MARK: &str = "airlock-approval:";

/// The id under which the approval rule `id` is evaluated.
pub(crate) fn approval_id(id: &str) -> String {
    format!("{APPROVAL_MARK}{id}")
}

/// The same policy with effect `permit`, under its marker id.
fn as_approval_marker(policy: &Policy) -> Result<Policy, Error> {
    let id = policy.id().to_string();
    let broken = |what: String| Error::Builtin(format!("approval policy {id:?}: {what}"));
    let mut json = policy.to_json().map_err(|e| broken(e.to_string()))?;
    match json.get_mut("effect") {
        Some(effect) if effect == "forbid" => *effect = serde_json::Value::from("permit"),
        _ => return Err(broken("not a forbid".into())),
    }
    Policy::from_json(Some(PolicyId::new(approval_id(&id))), json).map_err(|e| broken(e.to_string()))
}

/// Turn the configured paths into the list of `.cedar` files to read.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for path in paths {
        let md = std::fs::metadata(path).map_err(|source| Error::Io { path: path.clone(), source })?;
        if md.is_dir() {
            let mut files = Vec::new();
            let entries = std::fs::read_dir(path).map_err(|source| Error::Io { path: path.clone(), source })?;
            for entry in entries {
                let entry = entry.map_err(|source| Error::Io { path: path.clone(), source })?;
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "cedar") && p.is_file() {
                    files.push(p);
                }
            }
            files.sort();
            out.extend(files);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// The policies of a freshly parsed set in source order, each with its byte offset in `text`.
fn in_source_order<'a>(set: &'a PolicySet, text: &str) -> Vec<(&'a Policy, usize)> {
    // Cedar names parsed policies policy0, policy1, … in source order.
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    let mut cursor = 0;
    policies
        .into_iter()
        .map(|p| {
            let src = p.to_string();
            let offset = match text.get(cursor..).and_then(|rest| rest.find(&src)) {
                Some(i) => cursor + i,
                None => cursor,
            };
            cursor = offset + src.len().min(text.len().saturating_sub(offset));
            (p, offset)
        })
        .collect()
}

/// The byte offset of a diagnostic's first labelled span.
fn first_label(d: &dyn miette::Diagnostic) -> Option<usize> {
    d.labels().and_then(|mut l| l.next()).map(|l| l.offset())
}

/// The message of a diagnostic, with its help text.
fn describe(d: &dyn miette::Diagnostic) -> String {
    match d.help() {
        Some(help) => format!("{d} (help: {help})"),
        None => d.to_string(),
    }
}

fn diagnostic_at(file: &Path, text: &str, offset: Option<usize>, policy: Option<&str>, message: &str) -> Diagnostic {
    let (line, column) = line_col(text, offset.unwrap_or(0));
    Diagnostic { file: file.to_path_buf(), line, column, policy: policy.map(str::to_owned), message: message.to_owned() }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 3));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 999), (3, 2));
    }

    #[test]
    fn builtin_schema_and_defaults_validate() {
        let loaded = load(&PolicyConfig::default()).expect("built-ins load");
        assert!(loaded.report.is_ok());
        // The approval rule is evaluated as a marker permit; everything else as written.
        let markers = loaded.main.policies().filter(|p| p.id().to_string().starts_with(APPROVAL_MARK)).count();
        assert_eq!(markers, 1);
        assert_eq!(loaded.main.policies().count(), ids::ALL.len());
        let marker = loaded.main.policy(&PolicyId::new(approval_id(ids::PRODUCTION_DESTROY_APPROVAL))).unwrap();
        assert_eq!(marker.effect(), Effect::Permit);
        assert!(loaded.main.policy(&PolicyId::new(ids::PRODUCTION_DESTROY_APPROVAL)).is_none());
        assert!(!loaded.uses_arguments, "built-ins do not look at arguments");
        // And, independently, Cedar's validator accepts the raw default file.
        let set = PolicySet::from_str(DEFAULT_POLICIES).unwrap();
        let result = Validator::new(builtin_schema().unwrap()).validate(&set, ValidationMode::Strict);
        assert!(result.validation_passed(), "{result}");
        assert_eq!(result.validation_warnings().count(), 0);
    }

    #[test]
    fn unknown_disable_id_is_an_error() {
        let err = load(&PolicyConfig { files: vec![], disable: vec!["airlock-typo".into()] }).err().unwrap();
        assert!(matches!(err, Error::UnknownDisable { .. }), "{err}");
        assert!(err.to_string().contains("airlock-cross-environment"));
    }

    #[test]
    fn config_deserializes_strictly() {
        let c: PolicyConfig = serde_json::from_str(r#"{"files":["a.cedar"],"disable":["airlock-task-expired"]}"#).unwrap();
        assert_eq!(c.files, vec![PathBuf::from("a.cedar")]);
        assert!(serde_json::from_str::<PolicyConfig>(r#"{"disabled":[]}"#).is_err());
    }
}
