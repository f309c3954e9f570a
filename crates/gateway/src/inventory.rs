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
//! Ids the static entries do not list can be looked up on the upstream itself
//! (`[upstream.inventory_lookup]`, [`lookup`]): [`Inventory::resolve`] runs before the
//! decision and fills a cache that [`Inventory::attribute`] reads; static entries win over
//! lookups, and a lookup that fails leaves the id unattributed (rule above).
//!
//! This module must never attribute a destructive operation to a less protected
//! environment than it can prove.

pub mod lookup;
pub mod spec;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use airlock_types::{Environment, Tier};
use http::{header, request};

use crate::error::Error;
use crate::operation::{Operation, is_destructive};
use crate::ports::SecretCache;
use lookup::{Lookup, LookupContext, LookupSpec};

/// Where one inventoried resource lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Its environment.
    pub environment: Environment,
    /// Its tier.
    pub tier: Tier,
}

/// The resource inventory: static entries and per-upstream lookups.
///
/// Cloning copies the configuration; lookup caches and counters start empty in the clone.
#[derive(Debug, Default)]
pub struct Inventory {
    /// (upstream or "" for every upstream, id) → placement.
    entries: HashMap<(String, String), Placement>,
    /// Upstream name → its lookup.
    lookups: HashMap<String, Arc<Lookup>>,
}

impl Clone for Inventory {
    fn clone(&self) -> Self {
        let lookups = self.lookups.iter().map(|(k, l)| (k.clone(), Arc::new(Lookup::new(l.spec().clone())))).collect();
        Self { entries: self.entries.clone(), lookups }
    }
}

/// The environment and tier policy sees for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// Environment of the resource.
    pub environment: Environment,
    /// Tier of the resource.
    pub tier: Tier,
    /// How it was decided: `inventory`, `lookup`, `unattributed_destroy` or `upstream`.
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

    /// Look ids up on `upstream` as `spec` says (one lookup per upstream; a second replaces the first).
    pub fn add_lookup(&mut self, upstream: &str, spec: LookupSpec) {
        self.lookups.insert(upstream.to_owned(), Arc::new(Lookup::new(spec)));
    }

    /// Every configured lookup with its upstream's name, sorted by name (for the admin
    /// status endpoint's counters).
    pub fn lookups(&self) -> Vec<(String, Arc<Lookup>)> {
        let mut all: Vec<_> = self.lookups.iter().map(|(n, l)| (n.clone(), l.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The lookup configured for `upstream`.
    pub fn upstream_lookup(&self, upstream: &str) -> Option<&Lookup> {
        self.lookups.get(upstream).map(|l| &**l)
    }

    /// Check at startup that every lookup's secret exists in its upstream's environment
    /// and (if the vault binds it) belongs to that upstream; errors point at the `secret` line.
    pub async fn check_secrets(&self, secrets: &SecretCache, config_path: &Path) -> Result<(), Error> {
        for l in self.lookups.values() {
            let s = l.spec();
            let at = format!("{}:{}", config_path.display(), s.secret_line);
            let secret = secrets
                .get(&s.secret, &s.environment)
                .await
                .map_err(|e| Error::Secret(format!("{at}: upstream {:?}: inventory_lookup secret {:?}: {}", s.upstream.as_str(), s.secret, e.message)))?;
            lookup::secret_fits(&secret, s).map_err(|why| Error::Secret(format!("{at}: upstream {:?}: {why}", s.upstream.as_str())))?;
        }
        Ok(())
    }

    /// Before attribution: look up, on the request's upstream, the resource ids of `parts`
    /// (classified the way the pipeline classifies them) that the static entries do not
    /// place and the cache does not hold fresh. Distinct ids are looked up concurrently, at
    /// most [`lookup::MAX_IDS_PER_REQUEST`] per request; the rest, and every failure, stay
    /// unattributed. Does nothing for upstreams without a lookup.
    pub async fn resolve(&self, cx: LookupContext<'_>, parts: &request::Parts, segments: &[String], body: Option<&[u8]>) {
        let up = cx.upstream;
        let Some(l) = self.lookups.get(up.name.as_str()) else { return };
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let Ok(ops) = up.classifier.classify_all(&parts.method, segments, content_type, body) else { return };
        let mut ids: Vec<&str> = Vec::new();
        for id in ops.iter().filter_map(|o| o.resource_id.as_deref()) {
            let lookable = !id.is_empty() && id.len() <= lookup::MAX_ID_LEN && id != "." && id != "..";
            if lookable && self.lookup(up.name.as_str(), id).is_none() && !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.truncate(lookup::MAX_IDS_PER_REQUEST);
        futures_util::future::join_all(ids.into_iter().map(|id| l.ensure(&cx, id))).await;
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
        self.entries.get(&(upstream.to_owned(), id.to_owned())).or_else(|| self.entries.get(&(String::new(), id.to_owned())))
    }

    /// Attribute `op` sent through `upstream` (which serves `upstream_env`).
    pub fn attribute(&self, upstream: &str, upstream_env: &Environment, op: &Operation) -> Attribution {
        if let Some(p) = op.resource_id.as_deref().and_then(|id| self.lookup(upstream, id)) {
            let tier = if p.tier == Tier::Backup || op.tier == Tier::Backup { Tier::Backup } else { Tier::Primary };
            return Attribution { environment: p.environment.clone(), tier, source: "inventory" };
        }
        if let Some(p) = op.resource_id.as_deref().and_then(|id| self.lookups.get(upstream)?.cached(id)) {
            let tier = if p.tier == Tier::Backup || op.tier == Tier::Backup { Tier::Backup } else { Tier::Primary };
            return Attribution { environment: p.environment, tier, source: "lookup" };
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
