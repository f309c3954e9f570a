//! The shared vocabulary of airlock.
//!
//! This crate owns the small value types every other crate speaks in: environment
//! names, resource tiers, capabilities, grants and the validated names of agents,
//! upstreams and secrets. Parsing is strict so that a value that reaches policy or
//! the store is already known to be well formed.
//!
//! It must never do I/O, hold secrets or depend on another airlock crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a value could not be parsed into one of airlock's types.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An environment name is not 1–32 characters of `a-z`, `0-9` and `-` starting with a letter.
    #[error("invalid environment {0:?}: use 1-32 lowercase letters, digits or '-', starting with a letter (e.g. staging, production, dev-eu)")]
    Environment(String),
    /// A tier is neither `primary` nor `backup`.
    #[error("invalid tier {0:?}: expected 'primary' or 'backup'")]
    Tier(String),
    /// A capability is empty or not a valid operation name.
    #[error("invalid capability {0:?}: expected read, write, destroy or an operation name (letters, digits, '_', '-', '.')")]
    Capability(String),
    /// A grant is not of the form `UPSTREAM:CAPABILITY`.
    #[error("invalid grant {0:?}: expected UPSTREAM:CAPABILITY, e.g. github:read or railway-staging:volumeDelete")]
    Grant(String),
    /// A name (agent, upstream, secret) has characters or a length airlock does not accept.
    #[error("invalid {kind} name {value:?}: use 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit")]
    Name {
        /// Which kind of name was being parsed (agent, upstream, secret).
        kind: &'static str,
        /// The rejected value.
        value: String,
    },
}

/// An environment name such as `staging` or `production`.
///
/// Lowercase ASCII letters, digits and `-`, 1–32 characters, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Environment(String);

impl Environment {
    /// The environment name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the `production` environment (or a `prod`/`production-*` variant),
    /// which default policies treat with the most care.
    pub fn is_production(&self) -> bool {
        self.0 == "production" || self.0 == "prod" || self.0.starts_with("production-") || self.0.starts_with("prod-")
    }
}

impl FromStr for Environment {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok { Ok(Self(s.to_owned())) } else { Err(Error::Environment(s.to_owned())) }
    }
}

impl TryFrom<String> for Environment {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<Environment> for String {
    fn from(e: Environment) -> String {
        e.0
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a resource is a primary copy or a backup (recovery) copy.
///
/// Policy keeps backup-tier destruction away from any task that can destroy primaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// The live data.
    #[default]
    Primary,
    /// Backups, snapshots and other recovery copies.
    Backup,
}

impl Tier {
    /// `"primary"` or `"backup"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Primary => "primary",
            Tier::Backup => "backup",
        }
    }
}

impl FromStr for Tier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "primary" => Ok(Tier::Primary),
            "backup" => Ok(Tier::Backup),
            _ => Err(Error::Tier(s.to_owned())),
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a grant allows, or what an operation needs.
///
/// The three classes are ordered `Read < Write < Destroy`: a `write` grant covers
/// reads, a `destroy` grant covers writes and reads. A named operation
/// (`Operation("volumeDelete")`) allows exactly that operation and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Reads: GET/HEAD, GraphQL queries.
    Read,
    /// Changes that can be undone: POST/PUT/PATCH, ordinary mutations.
    Write,
    /// Changes that lose data: DELETE, `*Delete` mutations.
    Destroy,
    /// Exactly one named operation.
    Operation(String),
}

impl Capability {
    /// The capability as written in grants and policy (`read`, `write`, `destroy`, or the operation name).
    pub fn as_str(&self) -> &str {
        match self {
            Capability::Read => "read",
            Capability::Write => "write",
            Capability::Destroy => "destroy",
            Capability::Operation(op) => op,
        }
    }

    /// The rank of a class capability (read 1, write 2, destroy 3); `None` for a named operation.
    pub fn rank(&self) -> Option<u8> {
        match self {
            Capability::Read => Some(1),
            Capability::Write => Some(2),
            Capability::Destroy => Some(3),
            Capability::Operation(_) => None,
        }
    }

    /// Whether this is one of the three classes (`read`, `write`, `destroy`).
    pub fn is_class(&self) -> bool {
        self.rank().is_some()
    }
}

impl FromStr for Capability {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "read" => Ok(Capability::Read),
            "write" => Ok(Capability::Write),
            "destroy" => Ok(Capability::Destroy),
            _ => {
                let ok = !s.is_empty()
                    && s.len() <= 128
                    && s.as_bytes()[0].is_ascii_alphabetic()
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
                if ok { Ok(Capability::Operation(s.to_owned())) } else { Err(Error::Capability(s.to_owned())) }
            }
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A grant: the named upstream may be used with the given capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grant {
    /// The upstream (as named in `airlock.toml`).
    pub upstream: Name,
    /// What the grant allows on that upstream.
    pub capability: Capability,
}

impl Grant {
    /// Whether this grant allows an operation named `operation` of class `class` on `upstream`.
    ///
    /// A class grant covers every operation of that class or a lower one; a named grant
    /// covers only the operation with that exact name.
    pub fn allows(&self, upstream: &str, operation: &str, class: &Capability) -> bool {
        if self.upstream.as_str() != upstream {
            return false;
        }
        match (&self.capability, class.rank()) {
            (Capability::Operation(name), _) => name == operation,
            (granted, Some(needed)) => granted.rank().is_some_and(|g| g >= needed),
            (_, None) => false,
        }
    }

    /// Whether `self` is covered by `other`, i.e. granting `self` gives nothing `other` did not.
    ///
    /// Used by attenuation: a narrower token may only keep grants covered by the parent's.
    pub fn is_covered_by(&self, other: &Grant) -> bool {
        if self.upstream != other.upstream {
            return false;
        }
        match (&self.capability, &other.capability) {
            (a, b) if a == b => true,
            // A named operation may be of any class; only `destroy` certainly covers it.
            (Capability::Operation(_), Capability::Destroy) => true,
            (Capability::Operation(_), _) => false,
            (a, b) => match (a.rank(), b.rank()) {
                (Some(x), Some(y)) => x <= y,
                _ => false,
            },
        }
    }
}

impl FromStr for Grant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (up, cap) = s.split_once(':').ok_or_else(|| Error::Grant(s.to_owned()))?;
        let upstream = Name::parse("upstream", up).map_err(|_| Error::Grant(s.to_owned()))?;
        let capability = cap.parse().map_err(|_| Error::Grant(s.to_owned()))?;
        Ok(Grant { upstream, capability })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.upstream, self.capability)
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A validated name for an agent, upstream or secret.
///
/// 1–64 characters of ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct Name(String);

impl Name {
    /// Parse `value` as a name of the given `kind` (used only in the error message).
    pub fn parse(kind: &'static str, value: &str) -> Result<Self, Error> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok { Ok(Self(value.to_owned())) } else { Err(Error::Name { kind, value: value.to_owned() }) }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::parse("a", &s).map_err(serde::de::Error::custom)
    }
}

impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments() {
        assert!("staging".parse::<Environment>().is_ok());
        assert!("dev-eu-1".parse::<Environment>().is_ok());
        for bad in ["", "Prod", "1prod", "prod env", "prod_env", &"a".repeat(33), "staging\n"] {
            assert!(bad.parse::<Environment>().is_err(), "{bad:?} accepted");
        }
        assert!("production".parse::<Environment>().unwrap().is_production());
        assert!(!"staging".parse::<Environment>().unwrap().is_production());
    }

    #[test]
    fn grants_parse_and_cover() {
        let g: Grant = "github:write".parse().unwrap();
        assert!(g.allows("github", "anything", &Capability::Read));
        assert!(g.allows("github", "anything", &Capability::Write));
        assert!(!g.allows("github", "anything", &Capability::Destroy));
        assert!(!g.allows("gitlab", "anything", &Capability::Read));
        let named: Grant = "railway:customDomainCreate".parse().unwrap();
        assert!(named.allows("railway", "customDomainCreate", &Capability::Write));
        assert!(!named.allows("railway", "volumeDelete", &Capability::Destroy));
        let read: Grant = "github:read".parse().unwrap();
        assert!(read.is_covered_by(&g));
        assert!(!g.is_covered_by(&read));
        assert!(!named.is_covered_by(&read));
        assert!(named.is_covered_by(&"railway:destroy".parse().unwrap()));
        assert!(!named.is_covered_by(&"railway:write".parse().unwrap()));
        for bad in ["github", ":read", "github:", "git hub:read", "github:re ad", "github:read:x"] {
            assert!(bad.parse::<Grant>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_round_trip() {
        let g: Grant = "a:destroy".parse().unwrap();
        let s = serde_json::to_string(&g).unwrap();
        assert_eq!(s, "\"a:destroy\"");
        assert_eq!(serde_json::from_str::<Grant>(&s).unwrap(), g);
        assert!(serde_json::from_str::<Environment>("\"BAD\"").is_err());
    }
}
