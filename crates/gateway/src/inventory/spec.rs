//! `[upstream.inventory_lookup]` as the configuration parses it: what to ask an upstream
//! about a resource id, and how to read the answer.
//!
//! This module owns only the validated description ([`LookupSpec`]); the configuration
//! builds it and [`crate::inventory::lookup`] carries it out, so neither depends on the
//! other. It holds no secret: the lookup's credential is named, never contained.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_types::{Environment, Name, Tier};

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupRequest {
    /// POST `{"query": query, "variables": {"id": id}}` to the base path + `path`.
    Graphql {
        /// Path below the base URL (may be empty).
        path: String,
        /// The query (one `query` operation declaring `$id`).
        query: String,
    },
    /// GET the base path + `template` with `{id}` replaced by the percent-encoded id.
    Get {
        /// Path template containing `{id}` once.
        template: String,
    },
}

/// Where a looked-up resource's tier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierSource {
    /// The same tier for every resource.
    Fixed(Tier),
    /// A JSON pointer into the answer (`primary` / `backup`).
    Pointer(String),
}

/// `[upstream.inventory_lookup]`, validated.
#[derive(Debug, Clone)]
pub struct LookupSpec {
    /// The upstream it asks.
    pub upstream: Name,
    /// That upstream's environment (the secret must belong to it).
    pub environment: Environment,
    /// The read-only vault secret.
    pub secret: String,
    /// Line of the `secret` key (for startup errors).
    pub secret_line: usize,
    /// The request.
    pub request: LookupRequest,
    /// JSON pointer to the environment.
    pub environment_pointer: String,
    /// Upstream environment names → airlock environments (`None`: the value must be one).
    pub environments: Option<BTreeMap<String, Environment>>,
    /// Where the tier comes from.
    pub tier: TierSource,
    /// Cache lifetime of an answer.
    pub ttl: Duration,
    /// Cache lifetime of "not found" and of failures.
    pub negative_ttl: Duration,
    /// Longest a lookup may take.
    pub timeout: Duration,
    /// Most cached ids.
    pub max_entries: usize,
}
