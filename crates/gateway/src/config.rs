//! `airlock.toml`: parsing and validating the gateway configuration.
//!
//! This module owns the configuration format (`[gateway]`, `[[upstream]]`,
//! `[[upstream.operation]]`, `[policy]`), strict parsing (unknown keys are errors) and
//! validation with errors that name the file, line and column. It turns the file into
//! runtime values ([`Upstream`]) the pipeline uses without re-checking.
//!
//! It must never hold or read a secret value: upstreams name a vault secret, nothing more.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use airlock_types::{Capability, Environment, Name, Tier};
use http::header::HeaderName;
use http::{Method, Uri};
use serde::Deserialize;
use toml::Spanned;

use crate::classify::{Classifier, RestRule};
use crate::error::Error;
use crate::graphql::{GraphqlClassifier, GraphqlRule};
use crate::inventory::spec::{LookupRequest, LookupSpec, TierSource};
use crate::inventory::{Inventory, Placement};
use crate::mcp::{McpClassifier, ToolRule};
use crate::presets::{AddError, NewUpstream};

/// The default agent-facing address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// The default admin address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7701";

/// The whole `airlock.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[gateway]`: listeners and limits.
    #[serde(default)]
    pub gateway: GatewaySection,
    /// `[[upstream]]`: the APIs the gateway fronts.
    #[serde(default)]
    pub upstream: Vec<Spanned<UpstreamSection>>,
    /// `[policy]`: operator policy files and disabled built-ins.
    #[serde(default)]
    pub policy: airlock_policy::PolicyConfig,
    /// `[broker]`: task-token settings, read by the broker (`airlock task start`), not the gateway.
    #[serde(default)]
    pub broker: Option<BrokerSection>,
    /// `[[inventory]]`: which resource lives in which environment and tier.
    #[serde(default)]
    pub inventory: Vec<InventorySection>,
}

/// `[[inventory]]`: one resource's placement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySection {
    /// The resource id as it appears in requests (`vol-prod-db`).
    pub id: Spanned<String>,
    /// Its environment.
    pub environment: Spanned<String>,
    /// `primary` (default) or `backup`.
    #[serde(default)]
    pub tier: Option<Spanned<String>>,
    /// Only for requests through this upstream (default: every upstream).
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
}

/// `approval = { mode = "reject" | "hold", ttl = "10m", hold_timeout = "5m" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSection {
    /// `reject` (default): answer 403 `approval_required` at once; `hold`: keep the request open.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long a pending request waits for a decision, and how long an approval stays
    /// usable (once) after it is given (default 10m).
    #[serde(default = "default_approval_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// `hold` mode: longest time a request is kept open (default 5m).
    #[serde(default = "default_hold_timeout", deserialize_with = "de_duration")]
    pub hold_timeout: Duration,
}

/// What the gateway does with a request that needs an approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalMode {
    /// Answer 403 `approval_required` with the approval id; the identical retry passes once approved.
    #[default]
    Reject,
    /// Keep the request open until approved (then forward), denied or timed out.
    Hold,
}

/// An upstream's approval settings, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Reject or hold.
    pub mode: ApprovalMode,
    /// Pending lifetime and approved-but-unused lifetime.
    pub ttl: Duration,
    /// Longest hold.
    pub hold_timeout: Duration,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self { mode: ApprovalMode::Reject, ttl: default_approval_ttl(), hold_timeout: default_hold_timeout() }
    }
}

fn default_approval_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_hold_timeout() -> Duration {
    Duration::from_secs(300)
}

/// `[broker]` (owned by the broker; declared here so the file is checked as a whole).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// Longest task lifetime, e.g. `"8h"`.
    #[serde(default)]
    pub max_ttl: Option<String>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Agent-facing address (default 127.0.0.1:7700).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Admin address (default 127.0.0.1:7701); never the same as `listen`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// The URL agents use to reach `listen` (what `airlock env` prints); default `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Default cap on a request body, bytes (default 64 MiB; per-upstream `max_body` overrides).
    #[serde(default = "default_max_body")]
    pub max_body: u64,
    /// Most bytes classification may buffer (GraphQL/MCP bodies; default 1 MiB).
    #[serde(default = "default_classify_limit")]
    pub classify_limit: usize,
    /// How long a fetched secret is kept in memory before the vault is asked again (default 30s).
    #[serde(default = "default_secret_ttl", deserialize_with = "de_duration")]
    pub secret_cache_ttl: Duration,
    /// Most audit records written in one transaction (default 512).
    #[serde(default = "default_audit_batch")]
    pub audit_batch: usize,
    /// Forward-proxy mode: accept `CONNECT` on `listen` (terminate TLS with leaves from the
    /// local airlock CA and route by host into the same pipeline). `airlock env` and
    /// `airlock run` then also hand out `HTTPS_PROXY` and the CA trust variables. Default false.
    #[serde(default)]
    pub forward_proxy: bool,
    /// Forward-proxy mode: `"host:port"` targets tunnelled blind (no TLS termination, no
    /// injection, audited with byte counts) instead of being refused.
    #[serde(default)]
    pub pass_through: Vec<Spanned<String>>,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            public_url: None,
            max_body: default_max_body(),
            classify_limit: default_classify_limit(),
            secret_cache_ttl: default_secret_ttl(),
            audit_batch: default_audit_batch(),
            forward_proxy: false,
            pass_through: Vec::new(),
        }
    }
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}
fn default_admin_listen() -> SocketAddr {
    DEFAULT_ADMIN_LISTEN.parse().expect("valid default")
}
fn default_max_body() -> u64 {
    64 << 20
}
fn default_classify_limit() -> usize {
    1 << 20
}
fn default_secret_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_audit_batch() -> usize {
    512
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

/// One string-valued upstream key after the preset is applied: its value and where it was
/// written (the key itself, or `preset = …` when the preset supplied it).
struct Field {
    value: String,
    span: Range<usize>,
}

/// `[[upstream]]` as written.
///
/// With `preset = "anthropic"` (see [`crate::presets`]) the preset supplies `name`,
/// `base_url`, `inject`, `env_vars`, `request_timeout` and its declared operations; every
/// key set here overrides the preset's, and `[[upstream.operation]]` entries are added to
/// the preset's. Without a preset, `name`, `base_url` and `inject` are required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// A built-in preset this upstream starts from (`anthropic`, `openai`).
    #[serde(default)]
    pub preset: Option<Spanned<String>>,
    /// Route name: agents call `http://<gateway>/<name>/<path>` (default: the preset's name).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// Where requests go: `https://host[:port][/base/path]`.
    #[serde(default)]
    pub base_url: Option<Spanned<String>>,
    /// The environment this upstream serves (required).
    #[serde(default)]
    pub environment: Option<Spanned<String>>,
    /// The vault secret injected into requests to this upstream (required).
    #[serde(default)]
    pub secret: Option<Spanned<String>>,
    /// How the secret is attached.
    #[serde(default)]
    pub inject: Option<Spanned<InjectSection>>,
    /// Allow a plain `http://` base URL (tests, loopback benchmarks). Default false.
    #[serde(default)]
    pub allow_insecure: bool,
    /// Extra PEM CA bundle trusted for this upstream (in addition to the web PKI roots).
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// TCP + TLS connect timeout (default 10s). Integer seconds or "500ms", "5s", "2m".
    #[serde(default = "default_connect_timeout", deserialize_with = "de_duration")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response head arrives (default 60s; a preset's own otherwise).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub request_timeout: Option<Duration>,
    /// Request body cap for this upstream, bytes (default: `[gateway] max_body`).
    #[serde(default)]
    pub max_body: Option<u64>,
    /// Variables `airlock env` prints for this upstream.
    #[serde(default)]
    pub env_vars: Option<EnvVarsSection>,
    /// How operations are recognised: `rest` (default), `graphql` or `mcp`.
    #[serde(default)]
    pub protocol: Option<Spanned<ProtocolName>>,
    /// Declared operations.
    #[serde(default)]
    pub operation: Vec<OperationSection>,
    /// What happens to requests that need a human approval.
    #[serde(default)]
    pub approval: Option<ApprovalSection>,
    /// `[upstream.inventory_lookup]`: ask this upstream (read-only) where a resource lives.
    #[serde(default)]
    pub inventory_lookup: Option<Spanned<LookupSection>>,
}

/// `[upstream.inventory_lookup]` as written: a read-only query that tells which
/// environment (and tier) a resource id lives in, for ids `[[inventory]]` does not list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSection {
    /// A separate, read-only vault secret in the upstream's environment (never the
    /// upstream's own `secret`). It is attached the way the upstream's `inject` says.
    pub secret: Spanned<String>,
    /// A GraphQL query taking `$id`, POSTed to the base URL (plus `path`).
    #[serde(default)]
    pub graphql: Option<Spanned<String>>,
    /// GraphQL only: path below the base URL to POST to (default: the base URL itself).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// REST instead: a GET path template below the base URL containing `{id}` once.
    #[serde(default)]
    pub get: Option<Spanned<String>>,
    /// JSON pointer to the environment in the answer (`/data/volume/environment`).
    pub environment_pointer: Spanned<String>,
    /// Upstream environment names → airlock environments; when set, any other value is unknown.
    #[serde(default)]
    pub environments: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    /// JSON pointer to the tier (`primary` / `backup`) in the answer.
    #[serde(default)]
    pub tier_pointer: Option<Spanned<String>>,
    /// A fixed tier for every looked-up resource (default `primary`).
    #[serde(default)]
    pub tier: Option<Spanned<String>>,
    /// How long an answer is cached (default 5m).
    #[serde(default = "default_lookup_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// How long "not found" or a failed lookup is cached (default 10s; 0 = not cached).
    #[serde(default = "default_lookup_negative_ttl", deserialize_with = "de_duration")]
    pub negative_ttl: Duration,
    /// Longest a lookup may take, secret fetch to parsed answer (default 2s).
    #[serde(default = "default_lookup_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Most cached ids (default 10000).
    #[serde(default = "default_lookup_max_entries")]
    pub max_entries: usize,
}

fn default_lookup_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_lookup_negative_ttl() -> Duration {
    Duration::from_secs(10)
}
fn default_lookup_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_lookup_max_entries() -> usize {
    10_000
}

/// The upstream protocol, which decides how requests are classified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// Method + path templates.
    #[default]
    Rest,
    /// GraphQL over HTTP: fields classified from the parsed body.
    Graphql,
    /// MCP (JSON-RPC over HTTP): `tools/call` classified by tool name.
    Mcp,
}

/// `inject = { ... }` as written: exactly one of `header`, `basic`, `query`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectSection {
    /// Header name, e.g. `Authorization` or `x-api-key`.
    #[serde(default)]
    pub header: Option<String>,
    /// Header value template containing `{secret}` once (default `{secret}`).
    #[serde(default)]
    pub format: Option<String>,
    /// HTTP basic auth with this username and the secret as password.
    #[serde(default)]
    pub basic: Option<BasicSection>,
    /// Query parameter name carrying the secret.
    #[serde(default)]
    pub query: Option<String>,
}

/// `basic = { username = "..." }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSection {
    /// The basic-auth username.
    pub username: String,
}

/// `env_vars = { base_url = "OPENAI_BASE_URL", key = "OPENAI_API_KEY" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVarsSection {
    /// Variable set to the gateway URL of this upstream.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Variable set to the task token (the phantom credential).
    #[serde(default)]
    pub key: Option<String>,
}

/// `[[upstream.operation]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSection {
    /// HTTP method (REST).
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Path template relative to the base URL, e.g. `/v1/volumes/{id}` (REST).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Operation name used in grants, policy and audit (default `"METHOD /template"`).
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// `read`, `write` or `destroy`.
    pub capability: Spanned<String>,
    /// `primary` (default) or `backup`.
    #[serde(default)]
    pub tier: Option<Spanned<String>>,
    /// Where the resource id sits.
    #[serde(default)]
    pub resource: Option<ResourceSection>,
    /// GraphQL field names this entry declares (`protocol = "graphql"`).
    #[serde(default)]
    pub fields: Option<Spanned<Vec<String>>>,
    /// MCP tool names this entry declares (`protocol = "mcp"`).
    #[serde(default)]
    pub tools: Option<Spanned<Vec<String>>>,
}

/// `resource = { path = "id" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    /// Name of the path template parameter holding the resource id (REST).
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// GraphQL argument holding the resource id; `input.volumeId` reaches into an object argument.
    #[serde(default)]
    pub argument: Option<Spanned<String>>,
    /// JSON pointer into an MCP tool call's arguments (`/volumeId`).
    #[serde(default)]
    pub pointer: Option<Spanned<String>>,
}

/// How the secret is attached to a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// A header whose value is `prefix + secret + suffix`.
    Header {
        /// Header name.
        name: HeaderName,
        /// Text before `{secret}`.
        prefix: String,
        /// Text after `{secret}`.
        suffix: String,
    },
    /// `Authorization: Basic base64(username:secret)`.
    Basic {
        /// The username.
        username: String,
    },
    /// A query parameter.
    Query {
        /// Parameter name.
        param: String,
    },
}

/// One upstream, validated and ready for the pipeline.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Route name.
    pub name: Name,
    /// The base URL as configured.
    pub base_url: String,
    /// `https` or `http`.
    pub scheme: http::uri::Scheme,
    /// `host[:port]` — the only place this upstream's credential is ever sent.
    pub authority: http::uri::Authority,
    /// Base path without trailing slash (may be empty).
    pub base_path: String,
    /// Environment served.
    pub environment: Environment,
    /// Vault secret name.
    pub secret: String,
    /// How to inject it.
    pub injection: Injection,
    /// Extra CA bundle.
    pub ca_file: Option<PathBuf>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response-head timeout.
    pub request_timeout: Duration,
    /// Request body cap.
    pub max_body: u64,
    /// `airlock env` variables.
    pub env_vars: Option<EnvVarsSection>,
    /// Protocol.
    pub protocol: ProtocolName,
    /// Operation classifier.
    pub classifier: Classifier,
    /// Approval mode and lifetimes.
    pub approval: ApprovalSettings,
    /// Line of the `secret` key (for startup errors about the secret).
    pub secret_line: usize,
    /// The built-in preset this upstream was made from, if any.
    pub preset: Option<&'static str>,
    /// Named operations a grant may name besides `read`, `write`, `destroy` (declared
    /// REST names, GraphQL fields, MCP tools, a preset's `model`), sorted, deduplicated.
    pub operation_names: Vec<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// Agent-facing address.
    pub listen: SocketAddr,
    /// Admin address.
    pub admin_listen: SocketAddr,
    /// URL agents use to reach the gateway.
    pub public_url: String,
    /// Classification buffer cap.
    pub classify_limit: usize,
    /// Secret cache lifetime.
    pub secret_cache_ttl: Duration,
    /// Audit group-commit batch cap.
    pub audit_batch: usize,
    /// Upstreams in file order.
    pub upstreams: Vec<Upstream>,
    /// Forward-proxy mode on `listen` (`[gateway] forward_proxy`).
    pub forward_proxy: bool,
    /// Forward-proxy pass-through targets: lowercase host (IPv6 without brackets) and port.
    pub pass_through: Vec<(String, u16)>,
    /// Policy configuration.
    pub policy: airlock_policy::PolicyConfig,
    /// Static resource inventory.
    pub inventory: Inventory,
}

impl Config {
    /// Read and validate `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parse and validate `text`, reporting errors against `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let err = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            Error::Config { path: path.to_owned(), line, column, message }
        };
        let file: FileConfig = toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_owned()))?;
        let g = file.gateway;
        if g.listen == g.admin_listen && g.listen.port() != 0 {
            return Err(err(None, "[gateway] listen and admin_listen must differ: the agent-facing port never serves admin routes".into()));
        }
        let public_url = g.public_url.clone().unwrap_or_else(|| format!("http://{}", g.listen));
        let public_url = public_url.trim_end_matches('/').to_owned();
        let mut seen = HashSet::new();
        let mut upstreams = Vec::new();
        let mut lookups = Vec::new();
        for su in file.upstream {
            let table_span = su.span();
            let u = su.into_inner();
            // A preset supplies defaults; whatever the block sets itself wins.
            let preset = match &u.preset {
                None => None,
                Some(p) => Some(crate::presets::find(p.get_ref()).ok_or_else(|| {
                    let known = crate::presets::names();
                    let hint = crate::presets::suggest(p.get_ref(), known.iter().copied())
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    err(Some(p.span()), format!("unknown preset {:?}{hint}: the built-in presets are {}; any other API is a plain [[upstream]] with base_url, inject and [[upstream.operation]] entries", p.get_ref(), known.join(", ")))
                })?),
            };
            let preset_span = u.preset.as_ref().map(|p| p.span()).unwrap_or(table_span.clone());
            let field = |own: &Option<Spanned<String>>, from_preset: Option<&str>| -> Option<Field> {
                match (own, from_preset) {
                    (Some(v), _) => Some(Field { value: v.get_ref().clone(), span: v.span() }),
                    (None, Some(v)) => Some(Field { value: v.to_owned(), span: preset_span.clone() }),
                    (None, None) => None,
                }
            };
            let missing = |key: &str, what: &str| {
                let whose = match (&u.name, preset) {
                    (Some(n), _) => format!("upstream {:?}", n.get_ref()),
                    (None, Some(p)) => format!("upstream {:?} (preset {})", p.name, p.name),
                    (None, None) => "[[upstream]]".to_owned(),
                };
                err(Some(table_span.clone()), format!("{whose}: missing {key}: {what}"))
            };
            let name_f = field(&u.name, preset.map(|p| p.name)).ok_or_else(|| {
                missing("name", "the route name agents call, http://<gateway>/<name>/… (or start from a preset = \"anthropic\" / \"openai\")")
            })?;
            let name = Name::parse("upstream", &name_f.value).map_err(|e| err(Some(name_f.span.clone()), e.to_string()))?;
            if !seen.insert(name.clone()) {
                return Err(err(Some(name_f.span.clone()), format!("duplicate upstream name {:?}: each [[upstream]] needs its own name", name.as_str())));
            }
            let env_f = field(&u.environment, None)
                .ok_or_else(|| missing("environment", "the one environment this upstream serves, e.g. environment = \"staging\""))?;
            let environment: Environment = env_f.value.parse().map_err(|e: airlock_types::Error| err(Some(env_f.span.clone()), e.to_string()))?;
            let base_f = field(&u.base_url, preset.map(|p| p.base_url))
                .ok_or_else(|| missing("base_url", "where requests go, e.g. base_url = \"https://api.example.com\""))?;
            let base_err = |m: String| err(Some(base_f.span.clone()), format!("upstream {:?}: base_url {m}", name.as_str()));
            let uri: Uri = base_f.value.parse().map_err(|e| base_err(format!("is not a URL: {e}")))?;
            let scheme = uri.scheme().cloned().ok_or_else(|| base_err("needs a scheme (https://…)".into()))?;
            if scheme == http::uri::Scheme::HTTP && !u.allow_insecure {
                return Err(base_err("uses plain http; use https, or set allow_insecure = true for a trusted loopback upstream".into()));
            }
            if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
                return Err(base_err("must be http or https".into()));
            }
            let authority = uri.authority().cloned().ok_or_else(|| base_err("needs a host".into()))?;
            if authority.as_str().contains('@') {
                return Err(base_err("must not contain user info; credentials come from the vault".into()));
            }
            if uri.query().is_some() {
                return Err(base_err("must not contain a query string".into()));
            }
            let base_path = uri.path().trim_end_matches('/').to_owned();
            let secret_f = field(&u.secret, None)
                .ok_or_else(|| missing("secret", "the vault secret injected into its requests (`airlock secret add NAME --env ENV --upstream UPSTREAM`)"))?;
            let secret = secret_f.value.clone();
            Name::parse("secret", &secret).map_err(|e| err(Some(secret_f.span.clone()), e.to_string()))?;
            let (inject, inject_span) = match (&u.inject, preset) {
                (Some(i), _) => (i.get_ref().clone(), i.span()),
                (None, Some(p)) => {
                    (InjectSection { header: Some(p.header.into()), format: Some(p.format.into()), basic: None, query: None }, preset_span.clone())
                }
                (None, None) => {
                    return Err(missing("inject", "how the secret is attached, e.g. inject = { header = \"Authorization\", format = \"Bearer {secret}\" }"));
                }
            };
            let injection = injection(&inject).map_err(|m| err(Some(inject_span), format!("upstream {:?}: inject: {m}", name.as_str())))?;
            let protocol = u.protocol.as_ref().map(|p| *p.get_ref()).unwrap_or_default();
            if let (Some(p), Some(pr)) = (preset, &u.protocol)
                && *pr.get_ref() != ProtocolName::Rest
            {
                return Err(err(Some(pr.span()), format!("upstream {:?}: preset {} is a REST API; protocol cannot be changed", name.as_str(), p.name)));
            }
            let op_err = |(span, m): SpanErr| err(span, format!("upstream {:?}: operation: {m}", name.as_str()));
            let mut operation_names: Vec<String> = Vec::new();
            let classifier = match protocol {
                ProtocolName::Rest => {
                    let mut rules = Vec::new();
                    for op in preset.map(|p| p.operations).unwrap_or_default() {
                        rules.push(preset_rule(op));
                        operation_names.extend(op.name.map(str::to_owned));
                    }
                    for op in &u.operation {
                        rules.push(rest_rule(op).map_err(op_err)?);
                        operation_names.extend(op.name.as_ref().map(|n| n.get_ref().clone()));
                    }
                    Classifier::new(rules)
                }
                ProtocolName::Graphql => Classifier::graphql(graphql_rules(&u.operation).map_err(op_err)?),
                ProtocolName::Mcp => Classifier::mcp(mcp_rules(&u.operation).map_err(op_err)?),
            };
            if protocol != ProtocolName::Rest {
                for op in &u.operation {
                    for list in [&op.fields, &op.tools].into_iter().flatten() {
                        operation_names.extend(list.get_ref().iter().cloned());
                    }
                }
            }
            operation_names.sort();
            operation_names.dedup();
            let approval = match &u.approval {
                Some(a) => ApprovalSettings { mode: a.mode, ttl: a.ttl, hold_timeout: a.hold_timeout },
                None => ApprovalSettings::default(),
            };
            if approval.ttl.is_zero() || approval.hold_timeout.is_zero() {
                return Err(err(Some(name_f.span.clone()), format!("upstream {:?}: approval ttl and hold_timeout must be positive", name.as_str())));
            }
            let env_vars = u.env_vars.clone().or_else(|| preset.map(|p| EnvVarsSection { base_url: Some(p.env_base_url.into()), key: Some(p.env_key.into()) }));
            if let Some(vars) = &env_vars {
                for v in [&vars.base_url, &vars.key].into_iter().flatten() {
                    let ok = !v.is_empty() && !v.as_bytes()[0].is_ascii_digit() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !ok {
                        return Err(err(
                            Some(name_f.span.clone()),
                            format!("upstream {:?}: env_vars: {v:?} is not a valid environment variable name", name.as_str()),
                        ));
                    }
                }
            }
            if let Some(l) = &u.inventory_lookup {
                let spec = lookup_spec(l, &secret, &name, &environment, text)
                    .map_err(|(span, m)| err(span.or(Some(l.span())), format!("upstream {:?}: inventory_lookup: {m}", name.as_str())))?;
                lookups.push((name.clone(), spec));
            }
            let request_timeout = u.request_timeout.or(preset.map(|p| p.request_timeout)).unwrap_or_else(default_request_timeout);
            upstreams.push(Upstream {
                secret_line: line_col(text, secret_f.span.start).0,
                name,
                base_url: base_f.value.clone(),
                scheme,
                authority,
                base_path,
                environment,
                secret,
                injection,
                ca_file: u.ca_file.map(|c| c.into_inner()),
                connect_timeout: u.connect_timeout,
                request_timeout,
                max_body: u.max_body.unwrap_or(g.max_body),
                env_vars,
                protocol,
                classifier,
                approval,
                preset: preset.map(|p| p.name),
                operation_names,
            });
        }
        let mut pass_through = Vec::new();
        for p in &g.pass_through {
            let hp = parse_host_port(p.get_ref())
                .ok_or_else(|| err(Some(p.span()), format!("[gateway] pass_through: {:?} must be \"host:port\" (e.g. \"pypi.org:443\")", p.get_ref())))?;
            if upstreams.iter().any(|u: &Upstream| upstream_host_port(u) == hp) {
                return Err(err(
                    Some(p.span()),
                    format!("[gateway] pass_through: {:?} is an upstream's host; its requests are terminated and injected, not passed through", p.get_ref()),
                ));
            }
            pass_through.push(hp);
        }
        let mut inventory = Inventory::new();
        for i in &file.inventory {
            let environment: Environment = i.environment.get_ref().parse().map_err(|e: airlock_types::Error| err(Some(i.environment.span()), e.to_string()))?;
            let tier = match &i.tier {
                Some(t) => t.get_ref().parse().map_err(|e: airlock_types::Error| err(Some(t.span()), e.to_string()))?,
                None => Tier::Primary,
            };
            let scope = i.upstream.as_ref().map(|u| u.get_ref().as_str());
            if let (Some(u), Some(s)) = (&i.upstream, scope)
                && !upstreams.iter().any(|x| x.name.as_str() == s)
            {
                return Err(err(Some(u.span()), format!("[[inventory]] upstream {s:?} is not a configured upstream")));
            }
            inventory.insert(scope, i.id.get_ref(), Placement { environment, tier }).map_err(|m| err(Some(i.id.span()), format!("[[inventory]]: {m}")))?;
        }
        for (upstream, spec) in lookups {
            inventory.add_lookup(upstream.as_str(), spec);
        }
        Ok(Config {
            inventory,
            forward_proxy: g.forward_proxy,
            pass_through,
            path: path.to_owned(),
            listen: g.listen,
            admin_listen: g.admin_listen,
            public_url,
            classify_limit: g.classify_limit,
            secret_cache_ttl: g.secret_cache_ttl,
            audit_batch: g.audit_batch.max(1),
            upstreams,
            policy: file.policy,
        })
    }

    /// The upstream with this route name.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name.as_str() == name)
    }
}

fn injection(s: &InjectSection) -> Result<Injection, String> {
    let modes = [s.header.is_some(), s.basic.is_some(), s.query.is_some()].iter().filter(|b| **b).count();
    if modes != 1 {
        return Err("set exactly one of header (with optional format), basic = { username }, or query".into());
    }
    if s.format.is_some() && s.header.is_none() {
        return Err("format only applies to header injection".into());
    }
    if let Some(h) = &s.header {
        let name = HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("{h:?} is not a valid header name"))?;
        if is_hop_by_hop(&name) || name == http::header::HOST || name.as_str().starts_with("x-airlock-") {
            return Err(format!("{h:?} cannot carry a credential (hop-by-hop, Host or reserved)"));
        }
        let format = s.format.clone().unwrap_or_else(|| "{secret}".into());
        let (prefix, suffix) = format.split_once("{secret}").ok_or("format must contain {secret}")?;
        if suffix.contains("{secret}") {
            return Err("format must contain {secret} exactly once".into());
        }
        if http::HeaderValue::from_str(&format!("{prefix}{suffix}")).is_err() {
            return Err("format contains characters not allowed in a header value".into());
        }
        return Ok(Injection::Header { name, prefix: prefix.into(), suffix: suffix.into() });
    }
    if let Some(b) = &s.basic {
        if b.username.contains(':') || b.username.bytes().any(|c| c.is_ascii_control()) {
            return Err("basic username must not contain ':' or control characters".into());
        }
        return Ok(Injection::Basic { username: b.username.clone() });
    }
    let q = s.query.clone().unwrap_or_default();
    if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(format!("query parameter name {q:?} must be letters, digits, '_', '-' or '.'"));
    }
    Ok(Injection::Query { param: q })
}

type SpanErr = (Option<Range<usize>>, String);

/// A preset's declared operation as a classifier rule (the table is checked by tests).
fn preset_rule(op: &crate::presets::PresetOperation) -> RestRule {
    let method = Method::from_bytes(op.method.as_bytes()).expect("preset methods are valid");
    let capability: Capability = op.capability.parse().expect("preset capabilities are valid");
    RestRule::new(method, op.path, op.name.map(str::to_owned), capability, Tier::Primary, None).expect("preset paths are valid")
}

fn rest_rule(op: &OperationSection) -> Result<RestRule, SpanErr> {
    if let Some(s) = op.fields.as_ref().map(|f| f.span()).or(op.tools.as_ref().map(|t| t.span())) {
        return Err((Some(s), "fields/tools only apply to protocol = \"graphql\" / \"mcp\" upstreams".into()));
    }
    if let Some(r) = &op.resource
        && let Some(p) = r.argument.as_ref().or(r.pointer.as_ref())
    {
        return Err((Some(p.span()), "a REST resource is named by path = \"param\"".into()));
    }
    let (Some(method), Some(path)) = (&op.method, &op.path) else {
        return Err((Some(op.capability.span()), "a REST operation needs both method and path".into()));
    };
    let m = Method::from_bytes(method.get_ref().to_ascii_uppercase().as_bytes())
        .map_err(|_| (Some(method.span()), format!("{:?} is not an HTTP method", method.get_ref())))?;
    let capability: Capability = op.capability.get_ref().parse().map_err(|e: airlock_types::Error| (Some(op.capability.span()), e.to_string()))?;
    if !capability.is_class() {
        return Err((Some(op.capability.span()), "capability must be read, write or destroy (name the operation with name = …)".into()));
    }
    let tier = match &op.tier {
        Some(t) => t.get_ref().parse().map_err(|e: airlock_types::Error| (Some(t.span()), e.to_string()))?,
        None => Tier::Primary,
    };
    let name = match &op.name {
        Some(n) => {
            // Operation names must be valid named capabilities so grants can name them.
            match n.get_ref().parse::<Capability>() {
                Ok(Capability::Operation(s)) => Some(s),
                _ => {
                    return Err((
                        Some(n.span()),
                        format!("operation name {:?} must be letters, digits, '_', '-', '.', '/' and not read/write/destroy", n.get_ref()),
                    ));
                }
            }
        }
        None => None,
    };
    let resource = op.resource.as_ref().and_then(|r| r.path.as_ref()).map(|p| (p.get_ref().clone(), p.span()));
    RestRule::new(m, path.get_ref(), name, capability, tier, resource.as_ref().map(|r| r.0.as_str()))
        .map_err(|msg| (Some(resource.map(|r| r.1).unwrap_or(path.span())), msg))
}

fn class_and_tier(op: &OperationSection) -> Result<(Capability, Tier), SpanErr> {
    let capability: Capability = op.capability.get_ref().parse().map_err(|e: airlock_types::Error| (Some(op.capability.span()), e.to_string()))?;
    if !capability.is_class() {
        return Err((Some(op.capability.span()), "capability must be read, write or destroy".into()));
    }
    let tier = match &op.tier {
        Some(t) => t.get_ref().parse().map_err(|e: airlock_types::Error| (Some(t.span()), e.to_string()))?,
        None => Tier::Primary,
    };
    Ok((capability, tier))
}

fn graphql_rules(ops: &[OperationSection]) -> Result<GraphqlClassifier, SpanErr> {
    let mut g = GraphqlClassifier::new();
    for op in ops {
        let Some(fields) = &op.fields else {
            return Err((Some(op.capability.span()), "a GraphQL operation needs fields = [\"fieldName\", …]".into()));
        };
        if let Some((what, span)) = [
            ("method", op.method.as_ref().map(|m| m.span())),
            ("path", op.path.as_ref().map(|p| p.span())),
            ("name", op.name.as_ref().map(|n| n.span())),
            ("tools", op.tools.as_ref().map(|t| t.span())),
        ]
        .into_iter()
        .find_map(|(w, s)| s.map(|s| (w, s)))
        {
            return Err((Some(span), format!("{what} does not apply to a GraphQL operation (name fields = [...])")));
        }
        let (capability, tier) = class_and_tier(op)?;
        let resource = match &op.resource {
            None => None,
            Some(r) => {
                if let Some(p) = r.path.as_ref().or(r.pointer.as_ref()) {
                    return Err((Some(p.span()), "a GraphQL resource is named by argument = \"argName\"".into()));
                }
                let a = r.argument.as_ref().ok_or((Some(op.capability.span()), "resource needs argument = \"argName\"".to_owned()))?;
                let path: Vec<String> = a.get_ref().split('.').map(str::to_owned).collect();
                if path.iter().any(|p| p.is_empty()) {
                    return Err((Some(a.span()), format!("resource argument {:?} must be a name or a dotted path like input.volumeId", a.get_ref())));
                }
                Some(path)
            }
        };
        if fields.get_ref().is_empty() {
            return Err((Some(fields.span()), "fields must name at least one field".into()));
        }
        for f in fields.get_ref() {
            g.declare(f, GraphqlRule { capability: capability.clone(), tier, resource: resource.clone() }).map_err(|m| (Some(fields.span()), m))?;
        }
    }
    Ok(g)
}

fn mcp_rules(ops: &[OperationSection]) -> Result<McpClassifier, SpanErr> {
    let mut m = McpClassifier::new();
    for op in ops {
        let Some(tools) = &op.tools else {
            return Err((Some(op.capability.span()), "an MCP operation needs tools = [\"tool_name\", …]".into()));
        };
        if let Some((what, span)) = [
            ("method", op.method.as_ref().map(|m| m.span())),
            ("path", op.path.as_ref().map(|p| p.span())),
            ("name", op.name.as_ref().map(|n| n.span())),
            ("fields", op.fields.as_ref().map(|f| f.span())),
        ]
        .into_iter()
        .find_map(|(w, s)| s.map(|s| (w, s)))
        {
            return Err((Some(span), format!("{what} does not apply to an MCP operation (name tools = [...])")));
        }
        let (capability, tier) = class_and_tier(op)?;
        let resource = match &op.resource {
            None => None,
            Some(r) => {
                if let Some(p) = r.path.as_ref().or(r.argument.as_ref()) {
                    return Err((Some(p.span()), "an MCP resource is named by pointer = \"/argName\"".into()));
                }
                Some(r.pointer.as_ref().ok_or((Some(op.capability.span()), "resource needs pointer = \"/argName\"".to_owned()))?.get_ref().clone())
            }
        };
        if tools.get_ref().is_empty() {
            return Err((Some(tools.span()), "tools must name at least one tool".into()));
        }
        for t in tools.get_ref() {
            m.declare(t, ToolRule { capability: capability.clone(), tier, resource: resource.clone() }).map_err(|e| (Some(tools.span()), e))?;
        }
    }
    Ok(m)
}

/// Validate `[upstream.inventory_lookup]` of upstream `u` (named `name`, serving `environment`).
fn lookup_spec(l: &Spanned<LookupSection>, upstream_secret: &str, name: &Name, environment: &Environment, text: &str) -> Result<LookupSpec, SpanErr> {
    let s = l.get_ref();
    let secret = s.secret.get_ref().clone();
    Name::parse("secret", &secret).map_err(|e| (Some(s.secret.span()), e.to_string()))?;
    if secret == upstream_secret {
        return Err((Some(s.secret.span()), format!("secret {secret:?} is the upstream's own credential; the lookup needs a separate, read-only one")));
    }
    let request = match (&s.graphql, &s.get) {
        (Some(q), None) => {
            check_lookup_query(q.get_ref()).map_err(|m| (Some(q.span()), format!("graphql: {m}")))?;
            let path = match &s.path {
                Some(p) => {
                    check_lookup_path(p.get_ref()).map_err(|m| (Some(p.span()), format!("path: {m}")))?;
                    p.get_ref().trim_end_matches('/').to_owned()
                }
                None => String::new(),
            };
            LookupRequest::Graphql { path, query: q.get_ref().clone() }
        }
        (None, Some(g)) => {
            if let Some(p) = &s.path {
                return Err((Some(p.span()), "path only applies to graphql lookups (put the whole path in get = \"/…/{id}\")".into()));
            }
            let t = g.get_ref();
            check_lookup_path(t).map_err(|m| (Some(g.span()), format!("get: {m}")))?;
            if t.matches("{id}").count() != 1 {
                return Err((Some(g.span()), format!("get: {t:?} must contain {{id}} exactly once")));
            }
            LookupRequest::Get { template: t.clone() }
        }
        _ => return Err((None, "set exactly one of graphql = \"query($id: ID!) { … }\" or get = \"/path/{id}\"".into())),
    };
    let pointer = |p: &Spanned<String>| check_pointer(p.get_ref()).map(|()| p.get_ref().clone()).map_err(|m| (Some(p.span()), m));
    let environment_pointer = pointer(&s.environment_pointer)?;
    let tier = match (&s.tier_pointer, &s.tier) {
        (Some(p), None) => TierSource::Pointer(pointer(p)?),
        (None, Some(t)) => TierSource::Fixed(t.get_ref().parse().map_err(|e: airlock_types::Error| (Some(t.span()), e.to_string()))?),
        (None, None) => TierSource::Fixed(Tier::Primary),
        (Some(_), Some(t)) => return Err((Some(t.span()), "set tier (fixed) or tier_pointer, not both".into())),
    };
    let environments = match &s.environments {
        None => None,
        Some(m) => {
            let mut out = std::collections::BTreeMap::new();
            for (from, to) in m.get_ref() {
                let env: Environment = to.parse().map_err(|e: airlock_types::Error| (Some(m.span()), format!("environments: {from:?} = {to:?}: {e}")))?;
                if from.is_empty() {
                    return Err((Some(m.span()), "environments: an upstream environment name must not be empty".into()));
                }
                out.insert(from.clone(), env);
            }
            if out.is_empty() {
                return Err((Some(m.span()), "environments must map at least one name (or leave it out)".into()));
            }
            Some(out)
        }
    };
    if s.ttl.is_zero() || s.timeout.is_zero() {
        return Err((None, "ttl and timeout must be positive".into()));
    }
    if s.max_entries == 0 {
        return Err((None, "max_entries must be at least 1".into()));
    }
    Ok(LookupSpec {
        upstream: name.clone(),
        environment: environment.clone(),
        secret,
        secret_line: line_col(text, s.secret.span().start).0,
        request,
        environment_pointer,
        environments,
        tier,
        ttl: s.ttl,
        negative_ttl: s.negative_ttl,
        timeout: s.timeout,
        max_entries: s.max_entries,
    })
}

/// A lookup query: one `query` operation (never a mutation) declaring `$id`.
fn check_lookup_query(q: &str) -> Result<(), String> {
    use async_graphql_parser::types::{DocumentOperations, OperationType};
    let doc = async_graphql_parser::parse_query(q).map_err(|e| format!("not a GraphQL document: {e}"))?;
    let op = match &doc.operations {
        DocumentOperations::Single(op) => op,
        DocumentOperations::Multiple(ops) if ops.len() == 1 => ops.values().next().expect("one operation"),
        DocumentOperations::Multiple(_) => return Err("must hold exactly one operation".into()),
    };
    if op.node.ty != OperationType::Query {
        return Err("must be a query (a lookup never changes anything)".into());
    }
    if !op.node.variable_definitions.iter().any(|v| v.node.name.node.as_str() == "id") {
        return Err("must declare the variable $id (e.g. query($id: ID!) { volume(id: $id) { environment } })".into());
    }
    Ok(())
}

/// A path below the base URL: starts with '/', no fragment, no dot segments, no backslash.
fn check_lookup_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/' (it is relative to base_url)"));
    }
    let path = p.split('?').next().unwrap_or("");
    if p.contains('#') || p.contains('\\') || p.bytes().any(|b| b.is_ascii_control() || b == b' ') || path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{p:?} must not contain '#', '\\', spaces, control characters or . / .. segments"));
    }
    Ok(())
}

/// An RFC 6901 JSON pointer: empty, or '/'-prefixed with `~` only as `~0` / `~1`.
fn check_pointer(p: &str) -> Result<(), String> {
    let bad = || format!("{p:?} is not a JSON pointer (like \"/data/volume/environment\")");
    if p.is_empty() || !p.starts_with('/') {
        return Err(bad());
    }
    let b = p.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'~' && !matches!(b.get(i + 1), Some(b'0' | b'1')) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Parse `host:port` (IPv6 as `[::1]:443`) into a lowercase host without brackets and a port.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let a: http::uri::Authority = s.parse().ok()?;
    if a.as_str().contains('@') {
        return None;
    }
    let port = a.port_u16()?;
    let host = a.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    (!host.is_empty()).then_some((host, port))
}

/// The `(host, port)` an upstream's base URL points at (default port from the scheme).
pub fn upstream_host_port(u: &Upstream) -> (String, u16) {
    let default = if u.scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
    let host = u.authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    (host, u.authority.port_u16().unwrap_or(default))
}

/// Headers that describe one connection and are never forwarded (RFC 9110 §7.6.1).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "proxy-authenticate" | "proxy-authorization" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?}: use seconds or a number with ms, s or m (\"500ms\", \"5s\", \"2m\")"))),
    }
}

fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    let (num, mult_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000)
    } else {
        return None;
    };
    let n: u64 = num.trim().parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(mult_ms)?))
}

/// Adding a preset upstream to a configuration file's text (`airlock upstream add`).
///
/// `existing` (the configuration file's text, empty when it does not exist yet) with `new`
/// appended, validated by the real configuration loader as the file at `path` would be.
/// Refuses a name already configured. Returns the new text and its validated form.
pub fn add_to_config(existing: &str, path: &std::path::Path, new: &NewUpstream<'_>) -> Result<(String, Config), AddError> {
    let before = Config::parse(existing, path)?;
    if before.upstream(new.name()).is_some() {
        return Err(AddError::Duplicate { path: path.to_owned(), name: new.name().to_owned(), environment: new.environment.to_owned() });
    }
    let text = new.append_to(existing);
    let after = Config::parse(&text, path)?;
    Ok((text, after))
}

#[cfg(test)]
mod tests {
    #[test]
    fn add_validates_and_refuses_duplicates() {
        let p = std::path::Path::new("/etc/airlock/airlock.toml");
        let n = NewUpstream { preset: crate::presets::lookup("anthropic").unwrap(), name: None, environment: "staging", secret: "anthropic-key" };
        let (text, c) = add_to_config("# keep me\n", p, &n).unwrap();
        assert!(text.starts_with("# keep me\n"));
        assert_eq!(c.upstream("anthropic").unwrap().preset, Some("anthropic"));
        let e = add_to_config(&text, p, &n).unwrap_err();
        assert!(matches!(&e, AddError::Duplicate { name, .. } if name == "anthropic"), "{e:?}");
        assert!(e.to_string().contains("--name anthropic-staging"), "{e}");
        // A second environment under another name is fine.
        let prod = NewUpstream { name: Some("anthropic-prod"), environment: "production", ..n.clone() };
        let (text, c) = add_to_config(&text, p, &prod).unwrap();
        assert_eq!(c.upstreams.len(), 2, "{text}");
        // Bad values are reported by the loader, with the line of the new block.
        let bad = NewUpstream { environment: "Staging!", ..n.clone() };
        let e = add_to_config("", p, &bad).unwrap_err();
        assert!(matches!(&e, AddError::Invalid(crate::Error::Config { line: 4, .. })), "{e:?}");
        // A broken existing file is not appended to.
        assert!(matches!(add_to_config("[gateway\n", p, &n), Err(AddError::Invalid(_))));
        let e = crate::presets::lookup("antropic").unwrap_err();
        assert!(e.to_string().contains("did you mean \"anthropic\"") && e.to_string().contains("anthropic, openai"), "{e}");
    }

    use super::*;

    const GOOD: &str = r#"
[gateway]
listen = "127.0.0.1:7700"

[[upstream]]
name = "openai"
base_url = "https://api.openai.com/v1/"
environment = "staging"
secret = "openai-key"
inject = { header = "Authorization", format = "Bearer {secret}" }
env_vars = { base_url = "OPENAI_BASE_URL", key = "OPENAI_API_KEY" }
request_timeout = "90s"

[[upstream.operation]]
method = "DELETE"
path = "/files/{id}"
name = "fileDelete"
capability = "destroy"
resource = { path = "id" }
"#;

    fn parse(s: &str) -> Result<Config, Error> {
        Config::parse(s, Path::new("airlock.toml"))
    }

    fn err_at(s: &str) -> (usize, String) {
        match parse(s) {
            Err(Error::Config { line, message, .. }) => (line, message),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD).unwrap();
        let u = &c.upstreams[0];
        assert_eq!(u.base_path, "/v1");
        assert_eq!(u.authority.as_str(), "api.openai.com");
        assert_eq!(u.request_timeout, Duration::from_secs(90));
        assert_eq!(c.public_url, "http://127.0.0.1:7700");
        assert!(matches!(&u.injection, Injection::Header { prefix, .. } if prefix == "Bearer "));
    }

    #[test]
    fn unknown_key_points_at_line() {
        let (line, msg) = err_at("[gateway]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
        assert_eq!(line, 3);
        assert!(msg.contains("listne"), "{msg}");
    }

    #[test]
    fn duplicate_upstreams_rejected() {
        let dup = format!(
            "{GOOD}\n[[upstream]]\nname = \"openai\"\nbase_url = \"https://x\"\nenvironment = \"staging\"\nsecret = \"s\"\ninject = {{ query = \"k\" }}\n"
        );
        let (line, msg) = err_at(&dup);
        assert!(msg.contains("duplicate upstream"), "{msg}");
        assert_eq!(line, GOOD.lines().count() + 3);
    }

    #[test]
    fn insecure_and_bad_inject_rejected() {
        let http = GOOD.replace("https://api.openai.com/v1/", "http://api.openai.com/v1/");
        assert!(err_at(&http).1.contains("allow_insecure"));
        let two = GOOD.replace(r#"format = "Bearer {secret}""#, r#"format = "Bearer {secret}", query = "k""#);
        assert!(err_at(&two).1.contains("exactly one"));
        let nosecret = GOOD.replace("Bearer {secret}", "Bearer");
        assert!(err_at(&nosecret).1.contains("{secret}"));
        let hop = GOOD.replace("header = \"Authorization\"", "header = \"Connection\"");
        assert!(err_at(&hop).1.contains("hop-by-hop"));
        let userinfo = GOOD.replace("https://api.openai.com", "https://u:p@api.openai.com");
        assert!(err_at(&userinfo).1.contains("user info"));
    }

    #[test]
    fn operation_errors() {
        let bad = GOOD.replace("capability = \"destroy\"", "capability = \"nuke it\"");
        assert!(err_at(&bad).1.contains("capability"));
        let bad = GOOD.replace("resource = { path = \"id\" }", "resource = { path = \"nope\" }");
        assert!(err_at(&bad).1.contains("nope"));
        let bad = GOOD.replace("request_timeout = \"90s\"", "protocol = \"graphql\"");
        assert!(err_at(&bad).1.contains("fields"));
    }

    #[test]
    fn example_config_in_the_repo_is_valid() {
        let text = include_str!("../../../airlock.example.toml");
        let c = Config::parse(text, Path::new("airlock.example.toml")).unwrap();
        assert_eq!(c.upstreams.len(), 5);
        assert!(c.upstream("github").is_some());
        assert_eq!(c.upstream("railway-production").unwrap().approval.mode, ApprovalMode::Hold);
        assert_eq!(c.inventory.len(), 3);
        assert!(!c.forward_proxy);
        // The commented-out examples are valid too, once uncommented.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&uncommented, Path::new("airlock.example.toml")).unwrap();
        assert!(c.upstream("infra-mcp").is_some() && c.upstream("jira").is_some() && c.upstream("maps").is_some());
        assert_eq!(c.upstream("anthropic").and_then(|u| u.preset), Some("anthropic"));
        let l = c.inventory.upstream_lookup("railway-staging").expect("the commented lookup example");
        assert_eq!((l.spec().ttl, l.spec().timeout), (Duration::from_secs(300), Duration::from_secs(2)));
    }

    #[test]
    fn inventory_lookup_errors() {
        let with = |l: &str| format!("{GOOD}\n[upstream.inventory_lookup]\nsecret = \"openai-ro\"\nenvironment_pointer = \"/environment\"\n{l}\n");
        let c = parse(&with("get = \"/files/{id}\"\ntier_pointer = \"/tier\"")).unwrap();
        let spec = c.inventory.upstream_lookup("openai").unwrap().spec();
        assert_eq!(spec.request, LookupRequest::Get { template: "/files/{id}".into() });
        assert_eq!(spec.tier, TierSource::Pointer("/tier".into()));
        assert_eq!(spec.secret_line, GOOD.lines().count() + 3);
        for (l, why) in [
            ("get = \"/files/id\"", "{id}"),
            ("get = \"/files/../{id}\"", ".."),
            ("get = \"files/{id}\"", "start with '/'"),
            ("get = \"/files/{id}\"\npath = \"/x\"", "path only applies"),
            ("graphql = \"{ me }\"", "$id"),
            ("get = \"/files/{id}\"\ntier = \"backup\"\ntier_pointer = \"/t\"", "not both"),
            ("get = \"/files/{id}\"\nenvironments = { prod = \"Prod!\" }", "environments"),
            ("get = \"/files/{id}\"\ntimeout = \"0s\"", "positive"),
            ("get = \"/files/{id}\"\nsurprise = 1", "surprise"),
        ] {
            let (line, msg) = err_at(&with(l));
            assert!(msg.contains(why), "{l}: {msg}");
            assert!(line > GOOD.lines().count(), "{l}: line {line}");
        }
    }

    const PRESET: &str = "[[upstream]]\npreset = \"anthropic\"\nenvironment = \"staging\"\nsecret = \"anthropic-key\"\n";

    #[test]
    fn presets_fill_in_the_upstream() {
        let c = parse(PRESET).unwrap();
        let u = c.upstream("anthropic").expect("named after the preset");
        assert_eq!((u.preset, u.base_url.as_str(), u.authority.as_str()), (Some("anthropic"), "https://api.anthropic.com", "api.anthropic.com"));
        assert!(matches!(&u.injection, Injection::Header { name, prefix, suffix } if name == "x-api-key" && prefix.is_empty() && suffix.is_empty()));
        let vars = u.env_vars.as_ref().unwrap();
        assert_eq!((vars.base_url.as_deref(), vars.key.as_deref()), (Some("ANTHROPIC_BASE_URL"), Some("ANTHROPIC_API_KEY")));
        assert_eq!(u.request_timeout, Duration::from_secs(600));
        assert_eq!(u.operation_names, vec!["model".to_owned()]);
        let seg = |p: &str| p.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>();
        let op = u.classifier.classify(&Method::POST, &seg("/v1/messages"));
        assert_eq!((op.name.as_str(), op.capability.clone()), ("model", Capability::Write));
        assert_eq!(u.classifier.classify(&Method::POST, &seg("/v1/messages/count_tokens")).name, "model");
        assert_eq!(u.classifier.classify(&Method::POST, &seg("/v1/files")).name, "POST /v1/files");
        assert_eq!(u.classifier.classify(&Method::GET, &seg("/v1/models")).capability, Capability::Read);

        // Every field can be overridden, and operations are added to the preset's.
        let o = parse(
            "[[upstream]]\npreset = \"openai\"\nname = \"oai-stg\"\nenvironment = \"staging\"\nsecret = \"k\"\nbase_url = \"https://127.0.0.1:8443/v1\"\ninject = { header = \"api-key\" }\nenv_vars = { base_url = \"AZURE_URL\" }\nrequest_timeout = \"5s\"\n\n[[upstream.operation]]\nmethod = \"DELETE\"\npath = \"/files/{id}\"\nname = \"fileDelete\"\ncapability = \"destroy\"\n",
        )
        .unwrap();
        let u = o.upstream("oai-stg").unwrap();
        assert_eq!((u.base_path.as_str(), u.request_timeout, u.preset), ("/v1", Duration::from_secs(5), Some("openai")));
        assert!(matches!(&u.injection, Injection::Header { name, prefix, .. } if name == "api-key" && prefix.is_empty()));
        assert_eq!(u.env_vars.as_ref().unwrap().key, None);
        assert_eq!(u.operation_names, vec!["fileDelete".to_owned(), "model".to_owned()]);
        assert_eq!(u.classifier.classify(&Method::POST, &seg("/chat/completions")).name, "model");
    }

    #[test]
    fn preset_errors_point_at_the_line() {
        let (line, msg) = err_at(&format!("[gateway]\n\n{}", PRESET.replace("\"anthropic\"", "\"anthropc\"")));
        assert_eq!(line, 4);
        assert!(msg.contains("unknown preset \"anthropc\"") && msg.contains("did you mean \"anthropic\"") && msg.contains("anthropic, openai"), "{msg}");
        let (_, msg) = err_at(&PRESET.replace("\"anthropic\"", "\"gemini\""));
        assert!(msg.contains("anthropic, openai") && !msg.contains("did you mean"), "{msg}");
        let (line, msg) = err_at(&format!("\n{}", PRESET.replace("environment = \"staging\"\n", "")));
        assert!(msg.contains("missing environment") && msg.contains("preset anthropic"), "{msg}");
        assert_eq!(line, 2);
        assert!(err_at(&PRESET.replace("secret = \"anthropic-key\"\n", "")).1.contains("missing secret"));
        assert!(err_at(&format!("{PRESET}protocol = \"graphql\"\n")).1.contains("REST"));
        // Two of the same preset need distinct names.
        let (line, msg) = err_at(&format!("{PRESET}\n{}", PRESET.replace("staging", "production")));
        assert!(msg.contains("duplicate upstream name \"anthropic\""), "{msg}");
        assert_eq!(line, 7);
        parse(&format!(
            "{PRESET}\n{}",
            PRESET.replace("staging", "production").replace("preset = \"anthropic\"", "preset = \"anthropic\"\nname = \"anthropic-prod\"")
        ))
        .unwrap();
        // Without a preset, base_url and inject are required.
        let (_, msg) = err_at("[[upstream]]\nname = \"x\"\nenvironment = \"staging\"\nsecret = \"s\"\ninject = { query = \"k\" }\n");
        assert!(msg.contains("missing base_url"), "{msg}");
        let (_, msg) = err_at("[[upstream]]\nenvironment = \"staging\"\n");
        assert!(msg.contains("missing name"), "{msg}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("xs"), None);
    }
}
