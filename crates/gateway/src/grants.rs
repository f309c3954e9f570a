//! Checking grants against the configuration before a task is started.
//!
//! This module owns [`Config::check_grants`]: a grant must name a configured upstream and a
//! capability that upstream has (`read`, `write`, `destroy`, or one of its named
//! operations — declared REST names, GraphQL fields, MCP tools, a preset's `model`), so a
//! typo (`github:reed`, `nosuch:read`) fails loudly when the task is started instead of
//! silently allowing nothing. Errors carry the near miss ("did you mean …").
//!
//! It only reads the validated [`Config`]; it never mints, stores or verifies a token, and
//! it does not decide policy (a grant that passes here is still subject to every rule).

use airlock_types::{Capability, Grant};

use crate::config::Config;
use crate::presets::suggest;

/// Why a grant does not fit the configuration.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The grant names an upstream the configuration does not define.
    #[error("grant {grant:?}: no upstream named {upstream:?} in {config}{}; configured upstreams: {}", suggestion_text(.suggestion), list(.known))]
    UnknownUpstream {
        /// The grant as written.
        grant: String,
        /// The upstream it names.
        upstream: String,
        /// The closest configured upstream name, if it looks like a typo.
        suggestion: Option<String>,
        /// Every configured upstream.
        known: Vec<String>,
        /// The configuration file, for the message.
        config: String,
    },
    /// The grant names a capability the upstream does not have.
    #[error("grant {grant:?}: upstream {upstream:?} has no capability {capability:?}{}; its capabilities are {}", suggestion_text(.suggestion), list(.known))]
    UnknownCapability {
        /// The grant as written.
        grant: String,
        /// The upstream.
        upstream: String,
        /// The capability it names.
        capability: String,
        /// The closest capability, if it looks like a typo.
        suggestion: Option<String>,
        /// Every capability the upstream has: read, write, destroy, then its operation names.
        known: Vec<String>,
    },
}

impl GrantError {
    /// The suggested replacement grant (`github:read` for `github:reed`), if any.
    pub fn suggested_grant(&self) -> Option<String> {
        match self {
            GrantError::UnknownUpstream { grant, suggestion: Some(s), .. } => Some(format!("{s}:{}", grant.split_once(':').map(|(_, c)| c).unwrap_or(""))),
            GrantError::UnknownCapability { upstream, suggestion: Some(s), .. } => Some(format!("{upstream}:{s}")),
            _ => None,
        }
    }
}

fn suggestion_text(s: &Option<String>) -> String {
    s.as_ref().map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default()
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".to_owned() } else { v.join(", ") }
}

impl Config {
    /// Check that every grant names a configured upstream and one of its capabilities.
    /// Returns the first grant that does not fit.
    pub fn check_grants(&self, grants: &[Grant]) -> Result<(), GrantError> {
        for g in grants {
            let upstream = g.upstream.as_str();
            let Some(u) = self.upstream(upstream) else {
                let known: Vec<String> = self.upstreams.iter().map(|u| u.name.to_string()).collect();
                return Err(GrantError::UnknownUpstream {
                    grant: g.to_string(),
                    upstream: upstream.to_owned(),
                    suggestion: suggest(upstream, known.iter().map(String::as_str)).map(str::to_owned),
                    known,
                    config: self.path.display().to_string(),
                });
            };
            if let Capability::Operation(op) = &g.capability
                && !u.operation_names.iter().any(|n| n == op)
            {
                let known: Vec<String> = ["read", "write", "destroy"].into_iter().map(str::to_owned).chain(u.operation_names.iter().cloned()).collect();
                return Err(GrantError::UnknownCapability {
                    grant: g.to_string(),
                    upstream: upstream.to_owned(),
                    capability: op.clone(),
                    suggestion: suggest(op, known.iter().map(String::as_str)).map(str::to_owned),
                    known,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CFG: &str = r#"
[[upstream]]
preset = "anthropic"
environment = "staging"
secret = "anthropic-key"

[[upstream]]
name = "github"
base_url = "https://api.github.com"
environment = "staging"
secret = "gh"
inject = { header = "Authorization", format = "token {secret}" }

[[upstream.operation]]
method = "DELETE"
path = "/repos/{owner}/{repo}"
name = "repoDelete"
capability = "destroy"
"#;

    fn check(grants: &[&str]) -> Result<(), GrantError> {
        let c = Config::parse(CFG, Path::new("/etc/airlock/airlock.toml")).unwrap();
        let grants: Vec<Grant> = grants.iter().map(|g| g.parse().unwrap()).collect();
        c.check_grants(&grants)
    }

    #[test]
    fn known_grants_pass() {
        check(&["anthropic:model", "anthropic:read", "github:write", "github:repoDelete", "github:destroy"]).unwrap();
    }

    #[test]
    fn unknown_upstream_suggests() {
        let e = check(&["github:read", "anthropc:model"]).unwrap_err();
        assert!(matches!(&e, GrantError::UnknownUpstream { upstream, suggestion: Some(s), .. } if upstream == "anthropc" && s == "anthropic"), "{e:?}");
        assert_eq!(e.suggested_grant().as_deref(), Some("anthropic:model"));
        let msg = e.to_string();
        assert!(msg.contains("did you mean \"anthropic\"") && msg.contains("anthropic, github") && msg.contains("/etc/airlock/airlock.toml"), "{msg}");
        let e = check(&["nosuch:read"]).unwrap_err();
        assert!(matches!(&e, GrantError::UnknownUpstream { suggestion: None, .. }), "{e:?}");
    }

    #[test]
    fn unknown_capability_suggests() {
        let e = check(&["github:reed"]).unwrap_err();
        assert!(matches!(&e, GrantError::UnknownCapability { capability, suggestion: Some(s), .. } if capability == "reed" && s == "read"), "{e:?}");
        assert!(e.to_string().contains("did you mean \"read\""), "{e}");
        assert_eq!(e.suggested_grant().as_deref(), Some("github:read"));
        let e = check(&["anthropic:modle"]).unwrap_err();
        assert_eq!(e.suggested_grant().as_deref(), Some("anthropic:model"));
        assert!(e.to_string().contains("read, write, destroy, model"), "{e}");
        // An operation of another upstream is not this one's.
        assert!(check(&["anthropic:repoDelete"]).is_err());
    }
}
