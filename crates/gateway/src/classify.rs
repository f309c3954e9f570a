//! Operation classification: what does this request do, and to what?
//!
//! This module owns turning a request (method + decoded path segments today; GraphQL
//! fields and MCP tool calls later) into an [`Operation`]: a name, a capability class, a
//! tier and the resource id it touches. It must never fail open: an unknown method is
//! `destroy`, and when several declared operations match, the most dangerous one wins.
//! It never sees the request body for REST; protocols that need the body say so through
//! [`Classifier::needs_body`] and get at most the configured classification cap.

use airlock_types::{Capability, Tier};
use http::Method;

/// What a request does, as far as policy is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// Operation name for grants, policy and audit (a declared name, or `"METHOD /path"`).
    pub name: String,
    /// `read`, `write` or `destroy`.
    pub capability: Capability,
    /// The tier of the resource touched.
    pub tier: Tier,
    /// The resource id, when the operation declares where it sits.
    pub resource_id: Option<String>,
    /// Whether a declared operation matched (false = method default).
    pub declared: bool,
}

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
    pub fn new(
        method: Method,
        template: &str,
        name: Option<String>,
        capability: Capability,
        tier: Tier,
        resource: Option<&str>,
    ) -> Result<Self, String> {
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
}

/// Longest agent-supplied path kept in a default operation name.
const MAX_DEFAULT_NAME: usize = 256;

impl Classifier {
    /// A REST classifier over declared rules.
    pub fn new(rules: Vec<RestRule>) -> Self {
        Self { rules }
    }

    /// Whether classification needs the request body (GraphQL, MCP). Always false for REST.
    pub fn needs_body(&self) -> bool {
        false
    }

    /// Classify a request by method and decoded path segments (relative to the base URL).
    pub fn classify(&self, method: &Method, segments: &[String]) -> Operation {
        let best = self
            .rules
            .iter()
            .filter(|r| r.matches(method, segments))
            .fold(None::<&RestRule>, |best, r| match best {
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
        Operation { name, capability, tier: Tier::Primary, resource_id: None, declared: false }
    }
}

fn class_rank(c: &Capability) -> u8 {
    c.rank().unwrap_or(3)
}

/// The class of a request nothing declared: GET/HEAD read, POST/PUT/PATCH write, DELETE
/// destroy, anything else destroy (unknown is treated as the most restrictive).
pub fn default_capability(method: &Method) -> Capability {
    match *method {
        Method::GET | Method::HEAD => Capability::Read,
        Method::POST | Method::PUT | Method::PATCH => Capability::Write,
        _ => Capability::Destroy,
    }
}

#[cfg(test)]
mod tests {
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
    fn bad_templates() {
        assert!(RestRule::new(Method::GET, "v1", None, Capability::Read, Tier::Primary, None).is_err());
        assert!(RestRule::new(Method::GET, "/v1/x{id}", None, Capability::Read, Tier::Primary, None).is_err());
        assert!(RestRule::new(Method::GET, "/v1/{id}", None, Capability::Read, Tier::Primary, Some("nope")).is_err());
    }
}
