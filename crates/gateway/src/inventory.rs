//! Resource attribution: which environment and tier does the resource a request touches
//! belong to?
//!
//! This module owns the resource inventory (`[[inventory]]` entries in `airlock.toml`:
//! resource id → environment and tier, optionally scoped to one upstream) and the
//! attribution rule the pipeline applies to every classified operation:
//!
//! * a resource id found in the inventory takes its environment, and the more protected
//!   of the operation's and the inventory's tiers;
//! * a destroy (or unknown) operation whose resource cannot be attributed — no id, or an id
//!   the inventory does not know — is treated as **production**, keeping its declared tier
//!   (primary unless declared backup);
//! * anything else touches the upstream's own environment.
//!
//! A read-only lookup against the upstream is not implemented; unknown ids are handled by
//! the rule above. This module must never attribute a destructive operation to a less
//! protected environment than it can prove.

use std::collections::HashMap;

use airlock_types::{Environment, Tier};

use crate::classify::{Operation, is_destructive};

/// Where one inventoried resource lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its environment.
    pub environment: Environment,
    /// Its tier.
    pub tier: Tier,
}

/// The static resource inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// (upstream or "" for every upstream, id) → placement.
    entries: HashMap<(String, String), Placement>,
}

/// The environment and tier policy sees for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// Environment of the resource.
    pub environment: Environment,
    /// Tier of the resource.
    pub tier: Tier,
    /// How it was decided: `inventory`, `unattributed_destroy` or `upstream`.
    pub source: &'static str,
}

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an entry; `upstream` scopes it to one upstream. A duplicate is an error.
    pub fn insert(&mut self, upstream: Option<&str>, id: &str, placement: Placement) -> Result<(), String> {
        if id.is_empty() {
            return Err("inventory id must not be empty".into());
        }
        let key = (upstream.unwrap_or("").to_owned(), id.to_owned());
        if self.entries.insert(key, placement).is_some() {
            return Err(format!("inventory id {id:?} is listed twice"));
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where resource `id` lives as seen through `upstream` (an upstream-scoped entry wins).
    pub fn lookup(&self, upstream: &str, id: &str) -> Option<&Placement> {
        self.entries
            .get(&(upstream.to_owned(), id.to_owned()))
            .or_else(|| self.entries.get(&(String::new(), id.to_owned())))
    }

    /// Attribute `op` sent through `upstream` (which serves `upstream_env`).
    pub fn attribute(&self, upstream: &str, upstream_env: &Environment, op: &Operation) -> Attribution {
        if let Some(p) = op.resource_id.as_deref().and_then(|id| self.lookup(upstream, id)) {
            let tier = if p.tier == Tier::Backup || op.tier == Tier::Backup { Tier::Backup } else { Tier::Primary };
            return Attribution { environment: p.environment.clone(), tier, source: "inventory" };
        }
        if is_destructive(&op.capability) {
            return Attribution { environment: production(), tier: op.tier, source: "unattributed_destroy" };
        }
        Attribution { environment: upstream_env.clone(), tier: op.tier, source: "upstream" }
    }
}

fn production() -> Environment {
    "production".parse().expect("\"production\" is a valid environment name")
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::Capability;

    fn op(cap: Capability, tier: Tier, id: Option<&str>) -> Operation {
        Operation { name: "x".into(), capability: cap, tier, resource_id: id.map(Into::into), declared: true, arguments: None }
    }

    #[test]
    fn attribution_rules() {
        let staging: Environment = "staging".parse().unwrap();
        let mut inv = Inventory::new();
        inv.insert(None, "vol-prod-db", Placement { environment: production(), tier: Tier::Primary }).unwrap();
        inv.insert(None, "vol-staging-db", Placement { environment: staging.clone(), tier: Tier::Primary }).unwrap();
        inv.insert(Some("other"), "vol-staging-db", Placement { environment: production(), tier: Tier::Backup }).unwrap();
        assert!(inv.insert(None, "vol-prod-db", Placement { environment: production(), tier: Tier::Primary }).is_err());

        let a = inv.attribute("stg", &staging, &op(Capability::Destroy, Tier::Primary, Some("vol-prod-db")));
        assert_eq!((a.environment.as_str(), a.source), ("production", "inventory"));
        let a = inv.attribute("stg", &staging, &op(Capability::Destroy, Tier::Primary, Some("vol-staging-db")));
        assert_eq!(a.environment.as_str(), "staging");
        let a = inv.attribute("other", &staging, &op(Capability::Destroy, Tier::Primary, Some("vol-staging-db")));
        assert_eq!((a.environment.as_str(), a.tier), ("production", Tier::Backup));
        // Unattributable destroys are production; unknown ids too.
        for id in [None, Some("vol-unknown")] {
            let a = inv.attribute("stg", &staging, &op(Capability::Destroy, Tier::Primary, id));
            assert_eq!((a.environment.as_str(), a.tier, a.source), ("production", Tier::Primary, "unattributed_destroy"));
        }
        let a = inv.attribute("stg", &staging, &op(Capability::Destroy, Tier::Backup, None));
        assert_eq!((a.environment.as_str(), a.tier), ("production", Tier::Backup));
        // Reads and writes of unknown resources stay in the upstream's environment.
        let a = inv.attribute("stg", &staging, &op(Capability::Write, Tier::Primary, Some("vol-unknown")));
        assert_eq!((a.environment.as_str(), a.source), ("staging", "upstream"));
    }
}
