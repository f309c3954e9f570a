//! GraphQL classification: which fields does this request run, and on which resources?
//!
//! This module owns parsing a GraphQL-over-HTTP request body (a JSON object
//! `{query, variables, operationName, extensions}`, a batched array of them, or a raw
//! `application/graphql` document) with a real GraphQL parser (`cynic-parser`) and turning it into one
//! [`Operation`] per distinct field call that matters to policy:
//!
//! * every top-level field of **every** operation in the document, whatever
//!   `operationName` says (an `operationName` pointing at a harmless query must not hide a
//!   destructive mutation in the same document), including fields reached through
//!   aliases, named fragments and inline fragments (recursively, each fragment expanded
//!   once, so cycles end);
//! * declared fields (`[[upstream.operation]] fields = [...]`) wherever they appear, at any
//!   depth, with their resource argument resolved through variables;
//! * unlisted top-level fields: query → `read`, mutation and subscription → `write`.
//!
//! A persisted-query-only request (no `query`, only `extensions.persistedQuery`) cannot be
//! inspected: it is one operation named `unknown` of class `destroy`. A body that is not
//! JSON (or has duplicate keys), has no query, or does not parse is [`Unparsable`] and the
//! request is refused. This module must never classify a request as less dangerous than
//! any field it contains, and never report a variable's value other than as a resource id
//! or a declared field's argument.
//!
//! Parsed documents are cached by their exact text (bounded; see [`DocCache`]): clients
//! send the same documents again and again with different variables, and parsing is most
//! of the cost of classifying a large one. The cache holds only what the text alone
//! determines; variables, `operationName` and the walk are evaluated on every request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use airlock_types::{Capability, Tier};
use cynic_parser::ExecutableDocument;
use cynic_parser::common::OperationType;
use cynic_parser::executable::ids::FragmentDefinitionId;
use cynic_parser::executable::{Argument, Iter, Selection};
use cynic_parser::values::Value as GqlValue;
use serde_json::Value;

use crate::operation::{Operation, Unparsable, parse_json_strict};

/// Most requests in one batched array.
pub const MAX_BATCH: usize = 256;
/// Most distinct operations one request may carry (each is a policy decision).
pub const MAX_OPERATIONS: usize = 128;
/// Name of the operation a request that cannot be inspected (persisted query) performs.
pub const UNKNOWN_OPERATION: &str = "unknown";

/// Deepest nesting of selection sets inside one operation or fragment definition (the
/// top-level set is depth 0): deeper documents are unparsable.
const MAX_SELECTION_DEPTH: usize = 64;
/// Deepest the walk may go, counting nested selection sets and fragment spreads across
/// fragments (bounds the recursion however fragments chain): deeper is unparsable.
const MAX_WALK_DEPTH: usize = 512;
/// Deepest nesting of lists and objects in an argument value that is resolved.
const MAX_VALUE_DEPTH: usize = 64;

/// What a declared field does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphqlRule {
    /// `read`, `write` or `destroy`.
    pub capability: Capability,
    /// The tier of the resource it touches.
    pub tier: Tier,
    /// Where the resource id sits: an argument name, optionally followed by object keys
    /// (`["input", "volumeId"]` for `volumeDelete(input: {volumeId: …})`).
    pub resource: Option<Vec<String>>,
}

/// Classifies GraphQL requests for one upstream.
#[derive(Debug, Clone)]
pub struct GraphqlClassifier {
    fields: HashMap<String, Arc<GraphqlRule>>,
    /// `None`: every document is parsed (measurements of the parse itself).
    cache: Option<Arc<DocCache>>,
}

/// Most documents the parse cache keeps, and most bytes of document text.
const CACHE_ENTRIES: usize = 1024;
const CACHE_BYTES: usize = 16 << 20;
/// Documents longer than this are parsed every time (one must not flush the cache).
const CACHE_MAX_DOC: usize = 256 << 10;

/// Parsed documents by their exact text. Bounded in entries and bytes; when full it is
/// emptied (simple, and an attacker who floods it with unique documents only pays the
/// parse they would have paid anyway). Parse failures are not cached.
#[derive(Default)]
pub struct DocCache {
    /// Documents by text, and the bytes of text held.
    inner: Mutex<(Documents, usize)>,
}

type Documents = HashMap<Arc<str>, Arc<Parsed>>;

/// A document that parsed and passed the checks the old parser made while parsing
/// (operation and fragment names unique, an anonymous operation alone, at least one
/// operation, selection sets at most [`MAX_SELECTION_DEPTH`] deep), with its fragments
/// indexed by name.
struct Parsed {
    doc: ExecutableDocument,
    fragments: HashMap<Box<str>, FragmentDefinitionId>,
}

impl std::fmt::Debug for DocCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map(|g| g.0.len()).unwrap_or(0);
        f.debug_struct("DocCache").field("documents", &n).finish()
    }
}

impl DocCache {
    fn get_or_parse(&self, query: &str) -> Result<Arc<Parsed>, Unparsable> {
        if let Some(doc) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.get(query) {
            return Ok(doc.clone());
        }
        let doc = Arc::new(parse(query)?);
        if query.len() <= CACHE_MAX_DOC {
            let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if g.0.len() >= CACHE_ENTRIES || g.1 + query.len() > CACHE_BYTES {
                g.0.clear();
                g.1 = 0;
            }
            if g.0.insert(Arc::from(query), doc.clone()).is_none() {
                g.1 += query.len();
            }
        }
        Ok(doc)
    }
}

fn unparsable(e: impl std::fmt::Display) -> Unparsable {
    Unparsable(format!("the GraphQL document does not parse: {e}"))
}

/// Parse with `cynic-parser` and make the checks `async-graphql-parser` made.
fn parse(query: &str) -> Result<Parsed, Unparsable> {
    // cynic-parser 0.11 unwraps `str::parse::<i64>()` on integer literals: one that does
    // not fit panics. Refuse those first; the catch_unwind is a backstop only.
    if !int_literals_fit(query) {
        return Err(unparsable("an integer literal does not fit in 64 bits"));
    }
    let doc =
        std::panic::catch_unwind(|| cynic_parser::parse_executable_document(query)).map_err(|_| unparsable("the parser panicked"))?.map_err(unparsable)?;
    let mut names = HashSet::new();
    let mut anonymous = false;
    let mut count = 0usize;
    for op in doc.operations() {
        count += 1;
        match op.name() {
            Some(n) if !names.insert(n) => return Err(unparsable(format!("operation {:?} is defined twice", truncate(n)))),
            Some(_) => {}
            None => anonymous = true,
        }
        check_depth(op.selection_set(), MAX_SELECTION_DEPTH)?;
    }
    if count == 0 {
        return Err(unparsable("the document has no operation"));
    }
    if anonymous && count > 1 {
        return Err(unparsable("an anonymous operation must be the only one"));
    }
    let mut fragments = HashMap::new();
    for f in doc.fragments() {
        if fragments.insert(Box::<str>::from(f.name()), f.id()).is_some() {
            return Err(unparsable(format!("fragment {:?} is defined twice", truncate(f.name()))));
        }
        check_depth(f.selection_set(), MAX_SELECTION_DEPTH)?;
    }
    Ok(Parsed { doc, fragments })
}

/// Selection sets nested at most `remaining` levels below this one.
fn check_depth(set: Iter<'_, Selection<'_>>, remaining: usize) -> Result<(), Unparsable> {
    for s in set {
        let nested = match s {
            Selection::Field(f) => f.selection_set(),
            Selection::InlineFragment(f) => f.selection_set(),
            Selection::FragmentSpread(_) => continue,
        };
        if nested.len() == 0 {
            continue;
        }
        if remaining == 0 {
            return Err(unparsable("selection sets are nested too deeply"));
        }
        check_depth(nested, remaining - 1)?;
    }
    Ok(())
}

/// False when an integer literal of the document (outside strings, block strings and
/// comments) does not fit an `i64`. A literal that overflows needs at least 19 digits in a
/// row, so documents without such a run are not lexed here. Errs towards `false` (the
/// document is then refused) if it lexes differently from the parser.
fn int_literals_fit(q: &str) -> bool {
    let b = q.as_bytes();
    let mut run = 0;
    if !b.iter().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 19
    }) {
        return true;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() {
                    if b[i..].starts_with(b"\\\"\"\"") {
                        i += 4;
                    } else if b[i..].starts_with(b"\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' && b[i] != b'\r' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c == b'_' || c.is_ascii_alphabetic() => {
                while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
            }
            c if c == b'-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && matches!(b[i], b'.' | b'e' | b'E') {
                    // A float: f64 parsing saturates, it does not panic.
                    while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-')) {
                        i += 1;
                    }
                } else if i - start >= 19 && q[start..i].parse::<i64>().is_err() {
                    return false;
                }
            }
            _ => i += 1,
        }
    }
    true
}

impl Default for GraphqlClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GraphqlClassifier {
    /// An empty classifier: every query field is `read`, every mutation field `write`.
    pub fn new() -> Self {
        Self { fields: HashMap::new(), cache: Some(Arc::default()) }
    }

    /// Parse every document, never using the cache (to measure the parse).
    pub fn without_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Declare `field` (a GraphQL field name). Declaring a field twice is an error.
    pub fn declare(&mut self, field: &str, rule: GraphqlRule) -> Result<(), String> {
        let valid = field.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(format!("{field:?} is not a GraphQL field name"));
        }
        if self.fields.insert(field.to_owned(), Arc::new(rule)).is_some() {
            return Err(format!("field {field:?} is declared twice"));
        }
        Ok(())
    }

    /// Classify one request body. `content_type` decides whether a non-JSON body may be a
    /// raw `application/graphql` document.
    pub fn classify(&self, body: &[u8], content_type: Option<&str>) -> Result<Vec<Operation>, Unparsable> {
        let raw_doc = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("application/graphql"))
            && !content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"));
        let mut out = Out::default();
        if raw_doc {
            let q = std::str::from_utf8(body).map_err(|_| Unparsable("the GraphQL document is not UTF-8".into()))?;
            self.document(q, &serde_json::Map::new(), &mut out)?;
            return Ok(out.ops);
        }
        match parse_json_strict(body)? {
            Value::Array(batch) => {
                if batch.is_empty() || batch.len() > MAX_BATCH {
                    return Err(Unparsable(format!("a batch must hold 1 to {MAX_BATCH} requests")));
                }
                for r in &batch {
                    self.request(r, &mut out)?;
                }
            }
            single => self.request(&single, &mut out)?,
        }
        Ok(out.ops)
    }

    fn request(&self, r: &Value, out: &mut Out) -> Result<(), Unparsable> {
        let Value::Object(obj) = r else {
            return Err(Unparsable("a GraphQL request must be a JSON object".into()));
        };
        let empty = serde_json::Map::new();
        let vars = match obj.get("variables") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => return Err(Unparsable("\"variables\" must be an object".into())),
        };
        match obj.get("operationName") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(Unparsable("\"operationName\" must be a string".into())),
        }
        match obj.get("query") {
            Some(Value::String(q)) => self.document(q, vars, out),
            None | Some(Value::Null) => {
                let persisted = obj.get("extensions").and_then(|e| e.get("persistedQuery")).is_some();
                if !persisted {
                    return Err(Unparsable("the GraphQL request has no \"query\"".into()));
                }
                out.push(Operation {
                    name: UNKNOWN_OPERATION.into(),
                    capability: Capability::Destroy,
                    tier: Tier::Primary,
                    resource_id: None,
                    declared: false,
                    arguments: None,
                })
            }
            Some(_) => Err(Unparsable("\"query\" must be a string".into())),
        }
    }

    fn document(&self, query: &str, vars: &serde_json::Map<String, Value>, out: &mut Out) -> Result<(), Unparsable> {
        let parsed = match &self.cache {
            Some(c) => c.get_or_parse(query)?,
            None => Arc::new(parse(query)?),
        };
        let mut walk = Walk { parsed: &parsed, vars, rules: &self.fields, seen: HashSet::new() };
        // Every operation, regardless of operationName: the most dangerous one counts.
        for op in parsed.doc.operations() {
            let top = match op.operation_type() {
                OperationType::Query => Capability::Read,
                OperationType::Mutation | OperationType::Subscription => Capability::Write,
            };
            walk.selections(op.selection_set(), Some(&top), 0, out)?;
        }
        Ok(())
    }
}

/// Distinct operations collected so far.
#[derive(Default)]
struct Out {
    ops: Vec<Operation>,
}

impl Out {
    fn push(&mut self, op: Operation) -> Result<(), Unparsable> {
        if !self.ops.contains(&op) {
            if self.ops.len() >= MAX_OPERATIONS {
                return Err(Unparsable(format!("the request performs more than {MAX_OPERATIONS} distinct operations")));
            }
            self.ops.push(op);
        }
        Ok(())
    }
}

struct Walk<'a> {
    parsed: &'a Parsed,
    vars: &'a serde_json::Map<String, Value>,
    rules: &'a HashMap<String, Arc<GraphqlRule>>,
    /// (fragment, expanded at top level) pairs already expanded: cycles and repeats end here.
    seen: HashSet<(&'a str, bool)>,
}

impl<'a> Walk<'a> {
    /// Walk a selection set; `top` is the default class of unlisted fields at the top
    /// level of an operation, `None` below it. `depth` counts nested sets and spreads.
    fn selections(&mut self, set: Iter<'a, Selection<'a>>, top: Option<&Capability>, depth: usize, out: &mut Out) -> Result<(), Unparsable> {
        if depth > MAX_WALK_DEPTH {
            return Err(unparsable("selection sets and fragments are nested too deeply"));
        }
        for item in set {
            match item {
                Selection::Field(f) => {
                    let name = f.name();
                    if let Some(rule) = self.rules.get(name) {
                        self.declared(name, rule, f.arguments(), out)?;
                    } else if let Some(class) = top {
                        let class = if name.starts_with("__") { Capability::Read } else { class.clone() };
                        out.push(Operation {
                            name: name.to_owned(),
                            capability: class,
                            tier: Tier::Primary,
                            resource_id: None,
                            declared: false,
                            arguments: None,
                        })?;
                    }
                    self.selections(f.selection_set(), None, depth + 1, out)?;
                }
                Selection::InlineFragment(fr) => self.selections(fr.selection_set(), top, depth + 1, out)?,
                Selection::FragmentSpread(sp) => {
                    let name = sp.fragment_name();
                    let id = *self.parsed.fragments.get(name).ok_or_else(|| Unparsable(format!("fragment {:?} is used but not defined", truncate(name))))?;
                    if self.seen.insert((name, top.is_some())) {
                        self.selections(self.parsed.doc.read(id).selection_set(), top, depth + 1, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One call of a declared field: resolve its arguments (variables included) and emit
    /// one operation per resource id it names (or one without a resource).
    fn declared(&self, name: &str, rule: &GraphqlRule, args: Iter<'a, Argument<'a>>, out: &mut Out) -> Result<(), Unparsable> {
        let mut resolved = serde_json::Map::new();
        for a in args {
            if resolved.insert(a.name().to_owned(), self.resolve(a.value(), 0)?).is_some() {
                // GraphQL requires unique argument names; an upstream that keeps the first
                // could act on another resource than the one classified.
                return Err(Unparsable(format!(
                    "argument {:?} of {name} is given twice, which GraphQL forbids; airlock and the upstream could read different values",
                    truncate(a.name())
                )));
            }
        }
        let mut ids = Vec::new();
        if let Some(path) = &rule.resource {
            let mut at = resolved.get(path[0].as_str());
            for key in &path[1..] {
                at = at.and_then(|v| v.get(key.as_str()));
            }
            match at {
                Some(Value::Array(items)) => ids.extend(items.iter().map(id_of)),
                Some(v) => ids.push(id_of(v)),
                None => {}
            }
        }
        if ids.is_empty() {
            ids.push(None);
        }
        let arguments = Value::Object(resolved);
        for id in ids {
            out.push(Operation {
                name: name.to_owned(),
                capability: rule.capability.clone(),
                tier: rule.tier,
                resource_id: id,
                declared: true,
                arguments: Some(arguments.clone()),
            })?;
        }
        Ok(())
    }

    /// An argument value as JSON, variables substituted (a missing variable is null),
    /// enum values as strings, a float that JSON cannot hold as null.
    fn resolve(&self, v: GqlValue<'a>, depth: usize) -> Result<Value, Unparsable> {
        if depth > MAX_VALUE_DEPTH {
            return Err(unparsable("an argument value is nested too deeply"));
        }
        Ok(match v {
            GqlValue::Variable(var) => self.vars.get(var.name()).cloned().unwrap_or(Value::Null),
            GqlValue::Int(i) => Value::from(i.value()),
            GqlValue::Float(f) => serde_json::Number::from_f64(f.value()).map_or(Value::Null, Value::Number),
            GqlValue::String(s) => Value::String(s.value().to_owned()),
            GqlValue::Boolean(b) => Value::Bool(b.value()),
            GqlValue::Null(_) => Value::Null,
            GqlValue::Enum(e) => Value::String(e.name().to_owned()),
            GqlValue::List(l) => Value::Array(l.items().map(|x| self.resolve(x, depth + 1)).collect::<Result<_, _>>()?),
            GqlValue::Object(o) => {
                let mut m = serde_json::Map::new();
                for f in o.fields() {
                    if m.insert(f.name().to_owned(), self.resolve(f.value(), depth + 1)?).is_some() {
                        return Err(Unparsable(format!(
                            "input field {:?} is given twice, which GraphQL forbids; airlock and the upstream could read different values",
                            truncate(f.name())
                        )));
                    }
                }
                Value::Object(m)
            }
        })
    }
}

/// A resource id from a JSON value, in its one canonical form ([`crate::operation::resource_id`]).
fn id_of(v: &Value) -> Option<String> {
    crate::operation::resource_id(v)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classifier() -> GraphqlClassifier {
        let mut g = GraphqlClassifier::new();
        g.declare("volumeDelete", GraphqlRule { capability: Capability::Destroy, tier: Tier::Primary, resource: Some(vec!["volumeId".into()]) }).unwrap();
        g.declare("backupDelete", GraphqlRule { capability: Capability::Destroy, tier: Tier::Backup, resource: Some(vec!["backupId".into()]) }).unwrap();
        g.declare("volumeUpdate", GraphqlRule { capability: Capability::Write, tier: Tier::Primary, resource: Some(vec!["input".into(), "id".into()]) })
            .unwrap();
        g
    }

    fn ops(body: Value) -> Vec<Operation> {
        classifier().classify(body.to_string().as_bytes(), Some("application/json")).unwrap()
    }

    fn worst(ops: &[Operation]) -> Capability {
        ops.iter().map(|o| o.capability.clone()).max_by_key(crate::operation::class_rank).unwrap()
    }

    fn names(ops: &[Operation]) -> Vec<(&str, Option<&str>)> {
        ops.iter().map(|o| (o.name.as_str(), o.resource_id.as_deref())).collect()
    }

    #[test]
    fn queries_are_read_and_mutations_write_at_least() {
        let o = ops(json!({ "query": "{ volumes { id backups { id } } me { name } }" }));
        assert_eq!(names(&o), [("volumes", None), ("me", None)]);
        assert_eq!(worst(&o), Capability::Read);
        let o = ops(json!({ "query": "mutation { projectRename(id: \"p\", name: \"x\") }" }));
        assert_eq!(worst(&o), Capability::Write);
        let o = ops(json!({ "query": "subscription { logs }" }));
        assert_eq!(worst(&o), Capability::Write);
        let o = ops(json!({ "query": "mutation { __typename }" }));
        assert_eq!(worst(&o), Capability::Read);
    }

    #[test]
    fn destructive_fields_are_found_wherever_they_hide() {
        let cases = [
            json!({ "query": "mutation { harmless: volumeDelete(volumeId: \"vol-prod-db\") }" }),
            json!({ "query": "mutation { ...F } fragment F on Mutation { volumeDelete(volumeId: \"vol-prod-db\") }" }),
            json!({ "query": "mutation { ... on Mutation { ... on Mutation { volumeDelete(volumeId: \"vol-prod-db\") } } }" }),
            json!([{ "query": "{ me { name } }" }, { "query": "mutation { volumeDelete(volumeId: \"vol-prod-db\") }" }]),
            json!({ "query": "query A { me { name } } mutation B { volumeDelete(volumeId: \"vol-prod-db\") }", "operationName": "A" }),
            json!({ "query": "mutation D($id: ID!) { x: volumeDelete(volumeId: $id) }", "variables": { "id": "vol-prod-db" } }),
            json!({ "query": "mutation { project { volumeDelete(volumeId: \"vol-prod-db\") } }" }),
            json!({ "query": "mutation { volumeDelete(volumeId: \"vol-prod-db\") @skip(if: true) }" }),
        ];
        for c in cases {
            let o = ops(c.clone());
            assert!(
                o.iter().any(|o| o.name == "volumeDelete" && o.capability == Capability::Destroy && o.resource_id.as_deref() == Some("vol-prod-db")),
                "{c}: {o:?}"
            );
        }
    }

    #[test]
    fn fragment_cycles_end() {
        let o = ops(json!({ "query": "mutation { ...A } fragment A on Mutation { ...B volumeDelete(volumeId: \"v\") } fragment B on Mutation { ...A }" }));
        assert_eq!(names(&o), [("volumeDelete", Some("v"))]);
    }

    #[test]
    fn repeated_arguments_are_refused_and_numeric_ids_are_canonical() {
        let g = classifier();
        for doc in [
            r#"mutation { volumeDelete(volumeId: "vol-staging-db", volumeId: "vol-prod-db") { id } }"#,
            r#"mutation { volumeUpdate(input: { id: "a", id: "b" }) { id } }"#,
        ] {
            let body = serde_json::json!({ "query": doc }).to_string();
            assert!(g.classify(body.as_bytes(), Some("application/json")).is_err(), "{doc}");
        }
        for (lit, vars) in [("1001.0", serde_json::json!({})), ("1.001e3", serde_json::json!({})), ("$v", serde_json::json!({ "v": 1001.0 }))] {
            let q = if lit == "$v" {
                "mutation($v: Float) { volumeDelete(volumeId: $v) { id } }".to_owned()
            } else {
                format!("mutation {{ volumeDelete(volumeId: {lit}) {{ id }} }}")
            };
            let body = serde_json::json!({ "query": q, "variables": vars }).to_string();
            let ops = g.classify(body.as_bytes(), Some("application/json")).unwrap();
            assert_eq!(ops[0].resource_id.as_deref(), Some("1001"), "{lit}");
        }
    }

    #[test]
    fn resource_arguments_resolve() {
        let o = ops(json!({ "query": "mutation($i: VolumeInput!) { volumeUpdate(input: $i) }", "variables": { "i": { "id": "vol-9" } } }));
        assert_eq!(names(&o), [("volumeUpdate", Some("vol-9"))]);
        assert_eq!(o[0].arguments.as_ref().unwrap()["input"]["id"], "vol-9");
        let o = ops(json!({ "query": "mutation { a: volumeDelete(volumeId: \"v1\") b: volumeDelete(volumeId: \"v2\") c: volumeDelete(volumeId: \"v1\") }" }));
        assert_eq!(names(&o), [("volumeDelete", Some("v1")), ("volumeDelete", Some("v2"))]);
        // A missing variable names no resource: the pipeline treats the destroy as production.
        let o = ops(json!({ "query": "mutation($id: ID!) { volumeDelete(volumeId: $id) }" }));
        assert_eq!(names(&o), [("volumeDelete", None)]);
        assert_eq!(ops(json!({ "query": "mutation { backupDelete(backupId: \"b\") }" }))[0].tier, Tier::Backup);
    }

    #[test]
    fn unknown_and_unparsable() {
        let o = ops(json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "abc" } } }));
        assert_eq!((o[0].name.as_str(), &o[0].capability), (UNKNOWN_OPERATION, &Capability::Destroy));
        let c = classifier();
        for bad in [
            &b"not json"[..],
            br#"{"variables":{}}"#,
            br#"{"query":"mutation { volumeDelete("}"#,
            br#"{"query":42}"#,
            br#"[]"#,
            br#"{"query":"{ ...Missing }"}"#,
            br#"{"query":"{me}","query":"mutation{volumeDelete(volumeId:\"v\")}"}"#,
            br#"{"query":"query A {me} mutation A {volumeDelete(volumeId:\"v\")}"}"#,
            br#"{"query":"{me} mutation B {volumeDelete(volumeId:\"v\")}"}"#,
        ] {
            assert!(c.classify(bad, Some("application/json")).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let raw = c.classify(b"mutation { volumeDelete(volumeId: \"v\") }", Some("application/graphql")).unwrap();
        assert_eq!(names(&raw), [("volumeDelete", Some("v"))]);
    }

    #[test]
    fn cached_documents_classify_like_fresh_ones() {
        let c = classifier();
        let doc = "mutation D($id: ID!) { x: volumeDelete(volumeId: $id) }";
        for id in ["vol-1", "vol-2", "vol-1"] {
            let body = json!({ "query": doc, "variables": { "id": id } }).to_string();
            let cached = c.classify(body.as_bytes(), Some("application/json")).unwrap();
            let fresh = classifier().without_cache().classify(body.as_bytes(), Some("application/json")).unwrap();
            assert_eq!(cached, fresh);
            assert_eq!(names(&cached), [("volumeDelete", Some(id))]);
        }
        assert_eq!(c.cache.as_ref().unwrap().inner.lock().unwrap().0.len(), 1);
        // Failures are not cached and stay failures.
        for _ in 0..2 {
            assert!(c.classify(br#"{"query":"mutation { volumeDelete("}"#, Some("application/json")).is_err());
        }
    }

    fn err(query: &str) -> bool {
        classifier().classify(json!({ "query": query }).to_string().as_bytes(), Some("application/json")).is_err()
    }

    #[test]
    fn integer_literals_that_overflow_are_unparsable_not_a_panic() {
        // cynic-parser unwraps the i64 parse of integer literals.
        assert!(err("mutation { volumeDelete(volumeId: 99999999999999999999) }"));
        assert!(err("{ me(x: -9223372036854775809) }"));
        assert!(err("{ me(x: 9223372036854775808) }"));
        assert!(!err("{ me(x: -9223372036854775808, y: 9223372036854775807, z: 1e99999, w: 123456789012345678901234.5) }"));
        // Long digit runs in strings, block strings, comments and names are not literals.
        let o = ops(
            json!({ "query": "mutation M { volumeDelete(volumeId: \"99999999999999999999\") } # 99999999999999999999\n query Q { me(a: \"\"\"x \\\"\"\" 99999999999999999999\"\"\") v99999999999999999999 }" }),
        );
        assert!(names(&o).contains(&("volumeDelete", Some("99999999999999999999"))), "{o:?}");
        let o = ops(json!({ "query": "mutation { volumeDelete(volumeId: 1234567890123456789) }" }));
        assert_eq!(names(&o), [("volumeDelete", Some("1234567890123456789"))]);
    }

    #[test]
    fn string_escapes_are_decoded_before_attribution() {
        let o = ops(json!({ "query": "mutation { volumeDelete(volumeId: \"vol\\u002dprod\") b: volumeDelete(volumeId: \"\"\"\n  vol-blk\n\"\"\") }" }));
        assert_eq!(names(&o), [("volumeDelete", Some("vol-prod")), ("volumeDelete", Some("vol-blk"))]);
    }

    #[test]
    fn document_checks_the_old_parser_made() {
        assert!(err("fragment F on Query { me }"), "no operation");
        assert!(err("{ ...F } fragment F on Query { me } fragment F on Query { you }"), "duplicate fragment");
        assert!(err("type Query { me: Int }"), "type system definitions");
        assert!(err(""), "empty");
        assert!(err("{ me } { you }"), "two anonymous operations");
    }

    #[test]
    fn deep_nesting_is_bounded_and_never_overflows_the_stack() {
        let nest = |n: usize| format!("mutation {{ {} volumeDelete(volumeId: \"v\") {} }}", "a { ".repeat(n), "}".repeat(n));
        assert!(ops(json!({ "query": nest(MAX_SELECTION_DEPTH) })).iter().any(|o| o.name == "volumeDelete"));
        assert!(err(&nest(MAX_SELECTION_DEPTH + 1)));
        assert!(err(&nest(100_000)));
        let inline = format!("mutation {{ {} volumeDelete(volumeId: \"v\") {} }}", "... on Mutation { ".repeat(100_000), "}".repeat(100_000));
        assert!(err(&inline));
        // Values: the parser takes any depth; resolving a declared field's arguments is bounded.
        let deep_value = |n: usize| format!("mutation {{ volumeDelete(volumeId: \"v\", x: {}1{}) }}", "[".repeat(n), "]".repeat(n));
        assert!(!err(&deep_value(MAX_VALUE_DEPTH)));
        assert!(err(&deep_value(MAX_VALUE_DEPTH + 1)));
        assert!(err(&deep_value(100_000)));
        assert!(!err(&format!("{{ me(x: {}1{}) }}", "[".repeat(100_000), "]".repeat(100_000))), "undeclared fields' arguments are not resolved");
        // A long chain of fragments, each within the nesting limit, ends the walk too.
        let chain = |n: usize| {
            let mut q = String::from("mutation { ...F0 }");
            for i in 0..n {
                q.push_str(&format!(" fragment F{i} on Mutation {{ ...F{} }}", i + 1));
            }
            q + &format!(" fragment F{n} on Mutation {{ volumeDelete(volumeId: \"v\") }}")
        };
        assert!(ops(json!({ "query": chain(100) })).iter().any(|o| o.name == "volumeDelete"));
        assert!(err(&chain(20_000)));
    }

    #[test]
    fn fragment_cycles_below_the_top_level_end() {
        let o = ops(
            json!({ "query": "mutation { a { ...A } ...A } fragment A on M { ...B b { ...A } volumeDelete(volumeId: \"v\") } fragment B on M { ...A ...B }" }),
        );
        assert!(names(&o).contains(&("volumeDelete", Some("v"))), "{o:?}");
        assert!(o.iter().all(|o| o.name != "b" || o.capability == Capability::Write));
    }

    #[test]
    fn huge_documents() {
        // More distinct operations than allowed: refused, not truncated.
        let mut q = String::from("mutation {");
        for i in 0..=MAX_OPERATIONS {
            q.push_str(&format!(" a{i}: volumeDelete(volumeId: \"v{i}\")"));
        }
        assert!(err(&(q + " }")));
        // A 1 MB document parses, classifies, and is not cached.
        let c = classifier();
        let mut q = String::from("query {");
        while q.len() < 1 << 20 {
            q.push_str(" v: volumes(environment: \"staging\") { id name backups { id } }");
        }
        q.push_str(" } mutation M { volumeDelete(volumeId: \"v\") }");
        let o = c.classify(json!({ "query": q }).to_string().as_bytes(), Some("application/json"));
        assert!(o.is_err(), "an anonymous operation with another one");
        let q = q.replacen("query {", "query Q {", 1);
        let o = c.classify(json!({ "query": q }).to_string().as_bytes(), Some("application/json")).unwrap();
        assert_eq!(names(&o), [("volumes", None), ("volumeDelete", Some("v"))]);
        assert_eq!(c.cache.as_ref().unwrap().inner.lock().unwrap().0.len(), 0);
    }

    #[test]
    fn declare_rejects_bad_and_duplicate_names() {
        let mut g = classifier();
        assert!(g.declare("volumeDelete", GraphqlRule { capability: Capability::Read, tier: Tier::Primary, resource: None }).is_err());
        assert!(g.declare("9x", GraphqlRule { capability: Capability::Read, tier: Tier::Primary, resource: None }).is_err());
    }
}
