//! Operation classification: what does this request do, and to what?
//!
//! This module owns turning a request (method + decoded path segments for REST; GraphQL
//! fields via [`crate::graphql`]; MCP tool calls via [`crate::mcp`]) into [`Operation`]s:
//! a name, a capability class, a tier and the resource id it touches. It must never fail
//! open: an unknown method is `destroy`, and when several declared operations match, the
//! most dangerous one wins. It never sees the request body for REST; protocols that need
//! the body say so through [`Classifier::needs_body`] and get at most the configured
//! classification cap. A body it cannot understand is [`Unparsable`], never "harmless".

use airlock_types::{Capability, Tier};
use http::Method;

use crate::graphql::GraphqlClassifier;
use crate::mcp::McpClassifier;
pub use crate::operation::{Operation, Unparsable, class_rank, default_capability, is_destructive, parse_json_strict, resource_id};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
}

/// One declared REST operation: method + path template.
#[derive(Debug, Clone)]
pub struct RestRule {
    method: Method,
    segments: Vec<Seg>,
    name: String,
    capability: Capability,
    tier: Tier,
    resource: Option<usize>,
}

impl RestRule {
    /// Build a rule from a template such as `/v1/volumes/{id}`; `resource` names the
    /// parameter holding the resource id.
    pub fn new(method: Method, template: &str, name: Option<String>, capability: Capability, tier: Tier, resource: Option<&str>) -> Result<Self, String> {
        if !template.starts_with('/') {
            return Err(format!("path template {template:?} must start with '/'"));
        }
        let mut segments = Vec::new();
        for s in template.trim_start_matches('/').split('/').filter(|s| !s.is_empty()) {
            if let Some(p) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!("path parameter {{{p}}} must be letters, digits or '_'"));
                }
                segments.push(Seg::Param(p.to_owned()));
            } else if s.contains(['{', '}']) {
                return Err(format!("path segment {s:?}: a parameter must be a whole segment, like {{id}}"));
            } else {
                segments.push(Seg::Lit(s.to_owned()));
            }
        }
        let resource = match resource {
            Some(r) => Some(
                segments
                    .iter()
                    .position(|s| *s == Seg::Param(r.to_owned()))
                    .ok_or_else(|| format!("resource path parameter {r:?} is not in template {template:?}"))?,
            ),
            None => None,
        };
        let name = name.unwrap_or_else(|| format!("{method} {template}"));
        Ok(Self { method, segments, name, capability, tier, resource })
    }

    fn matches(&self, method: &Method, path: &[String]) -> bool {
        (self.method == method || (self.method == Method::GET && method == Method::HEAD))
            && self.segments.len() == path.len()
            && self.segments.iter().zip(path).all(|(s, p)| match s {
                Seg::Lit(l) => l == p,
                Seg::Param(_) => !p.is_empty(),
            })
    }
}

/// Classifies requests for one upstream.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    rules: Vec<RestRule>,
    body: Option<BodyClassifier>,
}

/// Protocols classified from the request body.
#[derive(Debug, Clone)]
enum BodyClassifier {
    Graphql(GraphqlClassifier),
    Mcp(McpClassifier),
}

/// Longest agent-supplied path kept in a default operation name.
const MAX_DEFAULT_NAME: usize = 256;

impl Classifier {
    /// A REST classifier over declared rules.
    pub fn new(rules: Vec<RestRule>) -> Self {
        Self { rules, body: None }
    }

    /// A GraphQL classifier (the body is parsed; see [`crate::graphql`]).
    pub fn graphql(g: GraphqlClassifier) -> Self {
        Self { rules: Vec::new(), body: Some(BodyClassifier::Graphql(g)) }
    }

    /// An MCP classifier (JSON-RPC body; see [`crate::mcp`]).
    pub fn mcp(m: McpClassifier) -> Self {
        Self { rules: Vec::new(), body: Some(BodyClassifier::Mcp(m)) }
    }

    /// Whether classification needs the request body (GraphQL, MCP). False for REST.
    pub fn needs_body(&self) -> bool {
        self.body.is_some()
    }

    /// Refuse what airlock and the upstream could read as different operations (issue 11's
    /// "one operation, one meaning"), before anything is classified:
    /// * a method override in a header (`X-HTTP-Method-Override`, `X-HTTP-Method`,
    ///   `X-Method-Override`) or a query parameter (`_method`, and the header names) — the
    ///   upstream may act on the overriding method while airlock classified the real one;
    /// * for GraphQL, anything but `POST`, and a document or its parts in the URL
    ///   (`query`, `operationName`, `variables`, `extensions`, `documentId`, `queryId`) next
    ///   to the body — two documents, one classified;
    /// * for MCP, anything but `POST` (`GET` streams and `DELETE` session ends carry no
    ///   classifiable operation; the MCP spec lets a server answer them 405).
    pub fn one_meaning(&self, method: &Method, headers: &http::HeaderMap, query: Option<&str>) -> Result<(), Ambiguity> {
        const OVERRIDE_HEADERS: [&str; 3] = ["x-http-method-override", "x-http-method", "x-method-override"];
        if let Some(h) = OVERRIDE_HEADERS.iter().find(|h| headers.contains_key(**h)) {
            return Err(Ambiguity::Override(format!("the {h} header")));
        }
        let names: Vec<String> = query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| percent_encoding::percent_decode_str(kv.split_once('=').map_or(kv, |(n, _)| n)).decode_utf8_lossy().to_ascii_lowercase())
            .collect();
        if let Some(n) = names.iter().find(|n| n.as_str() == "_method" || OVERRIDE_HEADERS.contains(&n.as_str())) {
            return Err(Ambiguity::Override(format!("the {n} query parameter")));
        }
        match &self.body {
            Some(BodyClassifier::Graphql(_)) => {
                if *method != Method::POST {
                    return Err(Ambiguity::Method { protocol: "GraphQL", method: method.to_string() });
                }
                const DOC: [&str; 6] = ["query", "operationname", "variables", "extensions", "documentid", "queryid"];
                if let Some(n) = names.iter().find(|n| DOC.contains(&n.as_str())) {
                    return Err(Ambiguity::SecondDocument(n.clone()));
                }
            }
            Some(BodyClassifier::Mcp(_)) if *method != Method::POST => {
                return Err(Ambiguity::Method { protocol: "MCP", method: method.to_string() });
            }
            _ => {}
        }
        Ok(())
    }

    /// The MCP classifier, when this upstream speaks MCP.
    pub fn as_mcp(&self) -> Option<&McpClassifier> {
        match &self.body {
            Some(BodyClassifier::Mcp(m)) => Some(m),
            _ => None,
        }
    }

    /// Classify a request: every operation it performs (at least one). REST requests are
    /// classified by method and path; GraphQL and MCP by `body` (the buffered request body,
    /// `None` when it was not read, which classifies as unparsable for those protocols).
    pub fn classify_all(&self, method: &Method, segments: &[String], content_type: Option<&str>, body: Option<&[u8]>) -> Result<Vec<Operation>, Unparsable> {
        match &self.body {
            None => Ok(vec![self.classify(method, segments)]),
            Some(b) => {
                let body = body.ok_or_else(|| Unparsable("the request body was not read".into()))?;
                let ops = match b {
                    BodyClassifier::Graphql(g) => g.classify(body, content_type)?,
                    BodyClassifier::Mcp(m) => m.classify(body)?,
                };
                if ops.is_empty() {
                    return Err(Unparsable("the request performs no operation".into()));
                }
                Ok(ops)
            }
        }
    }

    /// Classify a request by method and decoded path segments (relative to the base URL).
    pub fn classify(&self, method: &Method, segments: &[String]) -> Operation {
        let best = self.rules.iter().filter(|r| r.matches(method, segments)).fold(None::<&RestRule>, |best, r| match best {
            Some(b) if class_rank(&b.capability) >= class_rank(&r.capability) => Some(b),
            _ => Some(r),
        });
        if let Some(r) = best {
            return Operation {
                name: r.name.clone(),
                capability: r.capability.clone(),
                tier: r.tier,
                resource_id: r.resource.map(|i| segments[i].clone()),
                declared: true,
                arguments: None,
            };
        }
        let capability = default_capability(method);
        let mut name = format!("{method} /{}", segments.join("/"));
        if name.len() > MAX_DEFAULT_NAME {
            let mut cut = MAX_DEFAULT_NAME;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
            name.push('…');
        }
        Operation { name, capability, tier: Tier::Primary, resource_id: None, declared: false, arguments: None }
    }
}

/// A request airlock and the upstream could read differently (refused, never guessed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ambiguity {
    /// A method override (where it was found).
    #[error("a method override in {0} is refused: the upstream could act on another method than the one classified; send the real method")]
    Override(String),
    /// A method the protocol's operations are not carried by.
    #[error("{protocol} requests must be POST (got {method}): only a POST body carries an operation airlock can classify")]
    Method {
        /// `GraphQL` or `MCP`.
        protocol: &'static str,
        /// The method sent.
        method: String,
    },
    /// A GraphQL document (or part of one) in the URL next to the body.
    #[error("a GraphQL {0:?} parameter in the URL next to the body is refused: the upstream could run a different document than the one classified")]
    SecondDocument(String),
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_ids_have_one_canonical_form() {
        use serde_json::json;
        for v in
            [json!(1001), json!(1001.0), json!(1.001e3), json!("1001"), serde_json::from_str("1001.000").unwrap(), serde_json::from_str("10010e-1").unwrap()]
        {
            assert_eq!(super::resource_id(&v).as_deref(), Some("1001"), "{v}");
        }
        assert_eq!(super::resource_id(&json!(12.5)).as_deref(), Some("12.5"));
        assert_eq!(super::resource_id(&json!(1e300)), None);
        assert_eq!(super::resource_id(&json!(9.1e15)), None);
        assert_eq!(super::resource_id(&json!(true)), None);
        assert_eq!(super::resource_id(&json!("")), None);
        assert_eq!(super::resource_id(&json!("vol-1")).as_deref(), Some("vol-1"));
    }

    #[test]
    fn rest_method_overrides_are_ambiguous_in_any_spelling() {
        let c = super::Classifier::new(vec![]);
        let h = |k: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_static("DELETE"));
            m
        };
        let get = http::Method::GET;
        for name in ["X-HTTP-Method-Override", "x-http-method", "X-Method-Override"] {
            assert!(matches!(c.one_meaning(&get, &h(name), None), Err(super::Ambiguity::Override(_))), "{name}");
        }
        for q in ["_method=DELETE", "a=1&_METHOD=delete", "%5Fmethod=DELETE", "x-http-method-override=DELETE"] {
            assert!(c.one_meaning(&get, &http::HeaderMap::new(), Some(q)).is_err(), "{q}");
        }
        assert!(c.one_meaning(&get, &http::HeaderMap::new(), Some("method=fast&page=2")).is_ok());
        // REST is classified by its method: any method is fine without an override.
        assert!(c.one_meaning(&http::Method::DELETE, &http::HeaderMap::new(), None).is_ok());
    }

    use super::*;

    fn segs(p: &str) -> Vec<String> {
        p.trim_start_matches('/').split('/').map(str::to_owned).collect()
    }

    #[test]
    fn declared_and_default() {
        let c = Classifier::new(vec![
            RestRule::new(Method::DELETE, "/v1/volumes/{id}", Some("volumeDelete".into()), Capability::Destroy, Tier::Primary, Some("id")).unwrap(),
            RestRule::new(Method::DELETE, "/v1/backups/{id}", None, Capability::Destroy, Tier::Backup, Some("id")).unwrap(),
        ]);
        let op = c.classify(&Method::DELETE, &segs("/v1/volumes/vol-1"));
        assert_eq!((op.name.as_str(), op.resource_id.as_deref(), op.declared), ("volumeDelete", Some("vol-1"), true));
        let op = c.classify(&Method::DELETE, &segs("/v1/backups/b-9"));
        assert_eq!((op.name.as_str(), op.tier), ("DELETE /v1/backups/{id}", Tier::Backup));
        assert_eq!(c.classify(&Method::GET, &segs("/v1/volumes")).capability, Capability::Read);
        assert_eq!(c.classify(&Method::PATCH, &segs("/x")).capability, Capability::Write);
        assert_eq!(c.classify(&Method::DELETE, &segs("/v1/volumes/vol-1/x")).name, "DELETE /v1/volumes/vol-1/x");
        for m in ["OPTIONS", "PROPFIND", "TRACE", "PURGE"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(c.classify(&m, &segs("/a")).capability, Capability::Destroy, "{m}");
        }
    }

    #[test]
    fn most_dangerous_match_wins() {
        let c = Classifier::new(vec![
            RestRule::new(Method::POST, "/v1/{any}", None, Capability::Read, Tier::Primary, None).unwrap(),
            RestRule::new(Method::POST, "/v1/purge", None, Capability::Destroy, Tier::Primary, None).unwrap(),
        ]);
        assert_eq!(c.classify(&Method::POST, &segs("/v1/purge")).capability, Capability::Destroy);
        assert_eq!(c.classify(&Method::POST, &segs("/v1/list")).capability, Capability::Read);
    }

    #[test]
    fn strict_json_refuses_duplicate_keys() {
        assert!(parse_json_strict(br#"{"a":1,"b":{"c":[1,2,{"d":null}]}}"#).is_ok());
        assert!(parse_json_strict(br#"{"query":"{me}","query":"mutation{x}"}"#).is_err());
        assert!(parse_json_strict(br#"{"v":{"id":"a","\u0069d":"b"}}"#).is_err());
        assert!(parse_json_strict(br#"{"a":1} x"#).is_err());
    }

    #[test]
    fn bad_templates() {
        assert!(RestRule::new(Method::GET, "v1", None, Capability::Read, Tier::Primary, None).is_err());
        assert!(RestRule::new(Method::GET, "/v1/x{id}", None, Capability::Read, Tier::Primary, None).is_err());
        assert!(RestRule::new(Method::GET, "/v1/{id}", None, Capability::Read, Tier::Primary, Some("nope")).is_err());
    }
}
