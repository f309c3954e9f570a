//! The vocabulary every classifier speaks: what an [`Operation`] is, when a body is
//! [`Unparsable`], the one strict JSON parser (duplicate keys refused), the canonical form
//! of a resource id, and how capabilities rank.
//!
//! This module owns those definitions so that the REST classifier (`classify`) and the
//! GraphQL and MCP classifiers share them without depending on one another. It must never
//! read a request itself, and never treat something it cannot parse as harmless.

use airlock_types::{Capability, Tier};
use http::Method;

/// A body the classifier cannot understand; the request is refused (`unparsable_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparsable(pub String);

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
    /// Arguments passed to policy (MCP tool arguments, declared GraphQL fields' arguments).
    pub arguments: Option<serde_json::Value>,
}

/// The one canonical form of a resource id taken from a JSON value, as the upstream reads
/// it: a string as it is; a number that is a whole value as its integer (`1001`, `1001.0`,
/// `1.001e3` and `"1001"` are all `1001`); any other number as JSON writes it, unless it is
/// not exactly representable (beyond 2^53 as a float), which names no resource. Anything
/// else names no resource, so it cannot be attributed (a destroy of it counts as production).
pub fn resource_id(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(i.to_string());
            }
            if let Some(u) = n.as_u64() {
                return Some(u.to_string());
            }
            let f = n.as_f64()?;
            if !f.is_finite() || f.abs() >= 9_007_199_254_740_992.0 {
                return None;
            }
            if f.fract() == 0.0 { Some(format!("{}", f as i64)) } else { Some(n.to_string()) }
        }
        _ => None,
    }
}

/// Rank of a capability for "most dangerous wins": read 1, write 2, destroy 3, anything
/// else (unknown) 3, like destroy.
pub fn class_rank(c: &Capability) -> u8 {
    c.rank().unwrap_or(3)
}

/// Whether `c` is destroy or worse (unknown capabilities count as destroy).
pub fn is_destructive(c: &Capability) -> bool {
    class_rank(c) >= 3
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

/// Parse JSON, refusing duplicate object keys anywhere (an upstream that keeps the first
/// of two `"query"` or `"volumeId"` keys must not see a different request than the one
/// classified, which keeps the last).
pub fn parse_json_strict(bytes: &[u8]) -> Result<serde_json::Value, Unparsable> {
    use serde::de::DeserializeSeed as _;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictSeed.deserialize(&mut de).map_err(|e| Unparsable(format!("invalid JSON: {e}")))?;
    de.end().map_err(|e| Unparsable(format!("invalid JSON: {e}")))?;
    Ok(v)
}

struct StrictSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StrictSeed {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(StrictSeed)? {
            v.push(x);
        }
        Ok(serde_json::Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if m.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("duplicate key {:?}", k.chars().take(64).collect::<String>())));
            }
            let v = map.next_value_seed(StrictSeed)?;
            m.insert(k, v);
        }
        Ok(serde_json::Value::Object(m))
    }
}
