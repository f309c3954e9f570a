//! The decision engine: one gateway request in, one [`Decision`] out.
//!
//! This module owns turning a [`Request`] into Cedar entities and context, evaluating the
//! policy sets, and mapping the determining policies to a code and a human reason. It must
//! never panic out of [`PolicyEngine::decide`] and never allow on an error.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

use airlock_types::{Capability, Environment, Grant, Tier};
use cedar_policy::{
    AuthorizationError, Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request as CedarRequest, RestrictedExpression,
    Schema,
};

use crate::load::{APPROVAL_MARK, Meta, PolicyConfig, load};
use crate::{BACKUP_ADMIN_PURPOSE, Decision, DenyCode, Error, ids, is_backup_admin_purpose};

/// Most argument leaves passed to policy; more is denied (a policy could miss the one it looks for).
const MAX_ARGUMENT_LEAVES: usize = 1024;
/// Deepest argument nesting passed to policy; deeper is denied for the same reason.
const MAX_ARGUMENT_DEPTH: usize = 16;
/// Longest agent-influenced string quoted in a reason.
const MAX_QUOTED: usize = 128;

/// One request as the gateway sees it, ready for a policy decision.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The agent (principal) named in the task token.
    pub agent: &'a str,
    /// The task id.
    pub task_id: &'a str,
    /// The environment the task (and its token) is bound to.
    pub task_environment: &'a Environment,
    /// The task's grants.
    pub grants: &'a [Grant],
    /// The task's stated purpose, if any.
    pub purpose: Option<&'a str>,
    /// When the task expires (unix seconds).
    pub expires_at: i64,
    /// The upstream the request goes to.
    pub upstream: &'a str,
    /// The environment that upstream serves.
    pub upstream_environment: &'a Environment,
    /// The operation name, e.g. `volumeDelete` or `GET /repos/{owner}/{repo}`.
    pub operation: &'a str,
    /// The operation's class: read, write or destroy (anything else is evaluated as destroy).
    pub capability: &'a Capability,
    /// The id of the resource the operation touches, if known.
    pub resource_id: Option<&'a str>,
    /// Where the touched resource lives (the upstream's environment when nothing more is known).
    pub resource_environment: &'a Environment,
    /// The touched resource's tier.
    pub resource_tier: Tier,
    /// Whether an admin approved this exact request.
    pub approved: bool,
    /// The current time (unix seconds).
    pub now: i64,
    /// MCP tool arguments / GraphQL arguments, for operator policies.
    pub arguments: Option<&'a serde_json::Value>,
}

/// Cedar policy evaluation for airlock. Cheap to share: wrap it in an `Arc`.
pub struct PolicyEngine {
    schema: Schema,
    main: PolicySet,
    meta: HashMap<String, Meta>,
    uses_arguments: bool,
    disabled: Vec<String>,
    operator_policies: Vec<String>,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    upstream_type: EntityTypeName,
    resource_type: EntityTypeName,
    arguments_type: EntityTypeName,
    /// Action uids for read, write, destroy.
    actions: [EntityUid; 3],
    /// Decisions already made in the current second (`None`: switched off).
    cache: Option<Mutex<DecisionCache>>,
}

/// Most decisions remembered for one second.
const DECISION_CACHE_MAX: usize = 1024;

/// Decisions made during one second of [`Request::now`], keyed by an exact encoding of
/// every other input (see [`cache_key`]).
///
/// Why this is equivalent to evaluating every time: a decision is a pure function of the
/// [`Request`] and of the engine's policies, which never change after construction. The key
/// encodes every field of the request, `now` included (the cache holds only one second's
/// decisions and is emptied when `now` moves), so a hit returns exactly what evaluation
/// would return. Requests whose arguments policies look at are not cached at all (the
/// argument tree is not part of the key). Only completed evaluations are cached, never a
/// caught panic.
#[derive(Default)]
struct DecisionCache {
    second: i64,
    decisions: HashMap<Vec<u8>, Decision>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").field("operator_policies", &self.operator_policies).field("disabled", &self.disabled).finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// The built-in schema and default policies only.
    pub fn builtin() -> Result<Self, Error> {
        Self::from_config(&PolicyConfig::default())
    }

    /// Built-in defaults plus operator policy files (each path a `.cedar` file or a directory
    /// of them), validated against the schema.
    pub fn with_files(paths: &[PathBuf]) -> Result<Self, Error> {
        Self::from_config(&PolicyConfig { files: paths.to_vec(), disable: Vec::new() })
    }

    /// Built-in defaults minus `config.disable`, plus `config.files`.
    ///
    /// Fails if a file cannot be read, a policy does not parse or validate, or `disable`
    /// names an id that is not built in.
    pub fn from_config(config: &PolicyConfig) -> Result<Self, Error> {
        let loaded = load(config)?;
        if !loaded.report.is_ok() {
            return Err(Error::Invalid(Box::new(loaded.report)));
        }
        let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| Error::Builtin(format!("entity type {s}: {e}")));
        let action_type = ty("Airlock::Action")?;
        let action = |id: &str| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(id));
        Ok(Self {
            schema: loaded.schema,
            main: loaded.main,
            meta: loaded.meta,
            uses_arguments: loaded.uses_arguments,
            disabled: loaded.disabled,
            operator_policies: loaded.report.policies,
            authorizer: Authorizer::new(),
            agent_type: ty("Airlock::Agent")?,
            upstream_type: ty("Airlock::Upstream")?,
            resource_type: ty("Airlock::Resource")?,
            arguments_type: ty("Airlock::Arguments")?,
            actions: [action("read"), action("write"), action("destroy")],
            cache: Some(Mutex::new(DecisionCache::default())),
        })
    }

    /// Evaluate every request, remembering nothing (benchmarks and equivalence tests).
    pub fn without_decision_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Built-in policy ids an operator switched off (worth a warning at startup).
    pub fn disabled(&self) -> &[String] {
        &self.disabled
    }

    /// Ids of the loaded operator policies.
    pub fn operator_policies(&self) -> &[String] {
        &self.operator_policies
    }

    /// Decide one request. Never panics; any error building or evaluating the request is a
    /// Deny with [`DenyCode::PolicyError`].
    ///
    /// Identical requests within the same second (`now`) share one evaluation (see
    /// [`DecisionCache`] for why that cannot change an answer).
    pub fn decide(&self, req: &Request<'_>) -> Decision {
        let cached = self.cache.as_ref().and_then(|c| Some((c, cache_key(req, self.uses_arguments)?)));
        if let Some((cache, key)) = &cached {
            let c = cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.second == req.now
                && let Some(d) = c.decisions.get(key.as_slice())
            {
                return d.clone();
            }
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.evaluate(req))) {
            Ok(result) => {
                let decision = result.unwrap_or_else(|reason| Decision::Deny { code: DenyCode::PolicyError, reason, policies: Vec::new() });
                if let Some((cache, key)) = cached {
                    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
                    if c.second != req.now {
                        c.second = req.now;
                        c.decisions.clear();
                    }
                    if c.decisions.len() < DECISION_CACHE_MAX {
                        c.decisions.insert(key, decision.clone());
                    }
                }
                decision
            }
            Err(_) => Decision::Deny {
                code: DenyCode::PolicyError,
                reason: "policy evaluation failed unexpectedly; the request is denied (this is a bug in airlock)".into(),
                policies: Vec::new(),
            },
        }
    }

    fn evaluate(&self, req: &Request<'_>) -> Result<Decision, String> {
        let class = effective_class(req.capability);
        let (action, class_name) = match class {
            Capability::Read => (&self.actions[0], "read"),
            Capability::Write => (&self.actions[1], "write"),
            _ => (&self.actions[2], "destroy"),
        };
        let granted = req.grants.iter().any(|g| g.allows(req.upstream, req.operation, &class));
        let holds_destroy = req.grants.iter().any(|g| g.capability == Capability::Destroy);
        let backup_admin = req.purpose.is_some_and(is_backup_admin_purpose);

        let uid = |ty: &EntityTypeName, id: &str| EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id));
        let agent = uid(&self.agent_type, req.agent);
        let upstream = uid(&self.upstream_type, req.upstream);
        let resource = uid(&self.resource_type, req.resource_id.unwrap_or(""));
        let arguments = uid(&self.arguments_type, "");

        let tags = match (self.uses_arguments, req.arguments) {
            (true, Some(value)) => flatten_arguments(value)?,
            _ => BTreeMap::new(),
        };
        let str_expr = |s: &str| RestrictedExpression::new_string(s.to_owned());

        // Only the resource is materialised: the agent and upstream have no attributes (a
        // missing entity behaves as one without attributes or parents), and the arguments
        // entity only exists when some policy looks at arguments. Fewer entities keep the
        // per-request transitive-closure work small.
        let mut entities = Vec::with_capacity(2);
        entities.push(
            Entity::new_with_tags(
                resource.clone(),
                [
                    ("id".to_owned(), str_expr(req.resource_id.unwrap_or(""))),
                    ("environment".to_owned(), str_expr(req.resource_environment.as_str())),
                    ("tier".to_owned(), str_expr(req.resource_tier.as_str())),
                    ("production".to_owned(), RestrictedExpression::new_bool(req.resource_environment.is_production())),
                    ("upstream".to_owned(), str_expr(req.upstream)),
                    ("upstream_environment".to_owned(), str_expr(req.upstream_environment.as_str())),
                ],
                [upstream],
                [],
            )
            .map_err(|e| format!("cannot build the resource entity for policy: {e}"))?,
        );
        if self.uses_arguments {
            entities.push(
                Entity::new_with_tags(arguments.clone(), [], [], tags.into_iter().map(|(k, v)| (k, RestrictedExpression::new_string(v))))
                    .map_err(|_| "cannot pass the request's arguments to policy".to_owned())?,
            );
        }
        // The entities and context built here have a fixed shape, so checking them against the
        // schema on every request only re-proves this function; debug builds (and every test)
        // still do it, release builds skip it for speed.
        let check = if cfg!(debug_assertions) { Some(&self.schema) } else { None };
        let entities = Entities::from_entities(entities, check).map_err(|e| format!("the request does not fit the policy schema: {e}"))?;

        let mut task = vec![
            ("id".to_owned(), str_expr(req.task_id)),
            ("environment".to_owned(), str_expr(req.task_environment.as_str())),
            ("grants".to_owned(), RestrictedExpression::new_set(req.grants.iter().map(|g| RestrictedExpression::new_string(g.to_string())))),
            ("expires_at".to_owned(), RestrictedExpression::new_long(req.expires_at)),
            ("holds_destroy".to_owned(), RestrictedExpression::new_bool(holds_destroy)),
            ("backup_admin".to_owned(), RestrictedExpression::new_bool(backup_admin)),
        ];
        if let Some(purpose) = req.purpose {
            task.push(("purpose".to_owned(), str_expr(purpose)));
        }
        let task = RestrictedExpression::new_record(task).map_err(|e| format!("cannot build the task for policy: {e}"))?;
        let context = Context::from_pairs([
            ("task".to_owned(), task),
            ("operation".to_owned(), str_expr(req.operation)),
            ("capability".to_owned(), str_expr(class_name)),
            ("granted".to_owned(), RestrictedExpression::new_bool(granted)),
            ("approved".to_owned(), RestrictedExpression::new_bool(req.approved)),
            ("now".to_owned(), RestrictedExpression::new_long(req.now)),
            ("has_arguments".to_owned(), RestrictedExpression::new_bool(req.arguments.is_some())),
            ("arguments".to_owned(), RestrictedExpression::new_entity_uid(arguments)),
        ])
        .map_err(|e| format!("cannot build the policy context: {e}"))?;
        let request =
            CedarRequest::new(agent, action.clone(), resource, context, check).map_err(|e| format!("the request does not fit the policy schema: {e}"))?;

        let facts = Facts { req, class_name };

        // One evaluation. Deny: some ordinary forbid applies. Allow: the satisfied "permits"
        // are the real permits plus the markers of the approval rules that apply.
        let response = self.authorizer.is_authorized(&request, &self.main, &entities);
        check_errors(response.diagnostics().errors())?;
        let determining = response.diagnostics().reason().map(ToString::to_string);
        if response.decision() == cedar_policy::Decision::Deny {
            return Ok(self.deny(&facts, determining.collect()));
        }
        let (mut needing, mut permits) = (Vec::new(), Vec::new());
        for id in determining {
            match id.strip_prefix(APPROVAL_MARK) {
                Some(rule) => needing.push(rule.to_owned()),
                None => permits.push(id),
            }
        }
        if permits.is_empty() {
            // Only approval rules matched: nothing actually permits the request.
            return Ok(self.deny(&facts, Vec::new()));
        }
        if !needing.is_empty() && !req.approved {
            needing.sort();
            let reason = needing.iter().map(|id| self.reason_for(id, &facts)).collect::<Vec<_>>().join("; ");
            return Ok(Decision::NeedsApproval { reason, policies: needing });
        }
        permits.sort();
        Ok(Decision::Allow { policies: permits })
    }

    fn deny(&self, facts: &Facts<'_, '_>, determining: Vec<String>) -> Decision {
        if determining.is_empty() {
            return Decision::Deny {
                code: DenyCode::PolicyDenied,
                reason: format!("no policy permits {} ({}) on upstream {}", quote(facts.req.operation), facts.class_name, quote(facts.req.upstream)),
                policies: Vec::new(),
            };
        }
        let mut ranked: Vec<(u8, DenyCode, String)> = determining
            .into_iter()
            .map(|id| {
                let (rank, code) = code_of(&id);
                (rank, code, id)
            })
            .collect();
        ranked.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        let code = ranked[0].1;
        let reason = ranked.iter().map(|(_, _, id)| self.reason_for(id, facts)).collect::<Vec<_>>().join("; ");
        Decision::Deny { code, reason, policies: ranked.into_iter().map(|(_, _, id)| id).collect() }
    }

    fn reason_for(&self, id: &str, f: &Facts<'_, '_>) -> String {
        let r = f.req;
        let res = match r.resource_id {
            Some(id) => format!("resource {}", quote(id)),
            None => format!("the resource of {}", quote(r.operation)),
        };
        let builtin = self.meta.get(id).is_some_and(|m| m.builtin);
        let text = match id {
            ids::CROSS_ENVIRONMENT if builtin => {
                let mut parts = Vec::new();
                if r.task_environment != r.upstream_environment {
                    parts.push(format!("upstream {} serves {}", quote(r.upstream), r.upstream_environment));
                }
                if r.task_environment != r.resource_environment {
                    parts.push(format!("{res} lives in {}", r.resource_environment));
                }
                if parts.is_empty() {
                    parts.push("the upstream or resource is in another environment".into());
                }
                format!("task is bound to {} but {}", r.task_environment, parts.join(" and "))
            }
            ids::TASK_EXPIRED if builtin => format!("task {} expired at {} (now {}); start a new task", quote(r.task_id), r.expires_at, r.now),
            ids::NOT_GRANTED if builtin => {
                let mut s =
                    format!("task {} has no grant that allows {} ({}) on upstream {}", quote(r.task_id), quote(r.operation), f.class_name, quote(r.upstream));
                if r.grants.is_empty() {
                    s.push_str("; it has no grants");
                } else {
                    let _ = write!(s, "; its grants are {}", grant_list(r.grants.iter()));
                }
                s
            }
            ids::PRODUCTION_DESTROY_APPROVAL if builtin => {
                format!("destroying {res} in {} needs a human approval ({} on upstream {})", r.resource_environment, quote(r.operation), quote(r.upstream))
            }
            ids::BACKUP_DESTROY_SEPARATION if builtin => format!(
                "task {} holds a destroy grant ({}), so it may not destroy backup-tier {res}: backup authority must stay \
                 separate from primary authority; use a separate task whose purpose starts with \"{BACKUP_ADMIN_PURPOSE}\" \
                 and that holds no destroy grant",
                quote(r.task_id),
                grant_list(r.grants.iter().filter(|g| g.capability == Capability::Destroy))
            ),
            ids::BACKUP_DESTROY_PURPOSE if builtin => format!(
                "destroying backup-tier {res} needs a task whose purpose starts with \"{BACKUP_ADMIN_PURPOSE}\"; {}",
                match r.purpose {
                    Some(p) => format!("this task's purpose is {}", quote(p)),
                    None => "this task has no purpose".into(),
                }
            ),
            ids::BACKUP_ADMIN_NO_PRIMARY_DESTROY if builtin => format!(
                "task {} is a backup-administration task and may not destroy primary-tier {res}: backup authority must \
                 stay separate from primary authority",
                quote(r.task_id)
            ),
            _ => match self.meta.get(id).and_then(|m| m.reason.as_deref()) {
                Some(reason) => format!("policy {id:?}: {reason}"),
                None => format!("denied by policy {id:?}"),
            },
        };
        // Operator @reason text may hold anything; keep reasons one line and bounded.
        text.replace(['\n', '\r'], " ").chars().take(2048).collect()
    }
}

/// An unambiguous encoding of every field of `req` except `now` (the cache is per second):
/// each string is length-prefixed, each optional value and capability carries a tag, so two
/// requests share a key only if every input policy can see is equal. `None` when the
/// request's arguments reach policy (`uses_arguments`): those requests are not cached.
fn cache_key(req: &Request<'_>, uses_arguments: bool) -> Option<Vec<u8>> {
    fn put(k: &mut Vec<u8>, s: &str) {
        k.extend_from_slice(&(s.len() as u64).to_le_bytes());
        k.extend_from_slice(s.as_bytes());
    }
    fn put_opt(k: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => k.push(0),
            Some(s) => {
                k.push(1);
                put(k, s);
            }
        }
    }
    fn put_capability(k: &mut Vec<u8>, c: &Capability) {
        match c {
            Capability::Read => k.push(0),
            Capability::Write => k.push(1),
            Capability::Destroy => k.push(2),
            Capability::Operation(name) => {
                k.push(3);
                put(k, name);
            }
        }
    }
    if uses_arguments && req.arguments.is_some() {
        return None;
    }
    // Destructure so that a new field in `Request` does not compile until it is keyed here.
    let Request {
        agent,
        task_id,
        task_environment,
        grants,
        purpose,
        expires_at,
        upstream,
        upstream_environment,
        operation,
        capability,
        resource_id,
        resource_environment,
        resource_tier,
        approved,
        now: _,
        arguments,
    } = *req;
    let mut k = Vec::with_capacity(256);
    put(&mut k, agent);
    put(&mut k, task_id);
    put(&mut k, task_environment.as_str());
    k.extend_from_slice(&(grants.len() as u64).to_le_bytes());
    for g in grants {
        put(&mut k, g.upstream.as_str());
        put_capability(&mut k, &g.capability);
    }
    put_opt(&mut k, purpose);
    k.extend_from_slice(&expires_at.to_le_bytes());
    put(&mut k, upstream);
    put(&mut k, upstream_environment.as_str());
    put(&mut k, operation);
    put_capability(&mut k, capability);
    put_opt(&mut k, resource_id);
    put(&mut k, resource_environment.as_str());
    put(&mut k, resource_tier.as_str());
    k.push(u8::from(approved));
    // Without argument policies, arguments reach policy only as `has_arguments`.
    k.push(u8::from(arguments.is_some()));
    Some(k)
}

/// Facts about one request that reasons are built from.
struct Facts<'r, 'a> {
    req: &'r Request<'a>,
    class_name: &'static str,
}

/// The class an operation is evaluated as: its own if it is a class, else destroy.
fn effective_class(c: &Capability) -> Capability {
    match c {
        Capability::Read => Capability::Read,
        Capability::Write => Capability::Write,
        _ => Capability::Destroy,
    }
}

/// The deny code and precedence rank of a determining policy id.
fn code_of(id: &str) -> (u8, DenyCode) {
    match id {
        ids::CROSS_ENVIRONMENT => (0, DenyCode::CrossEnvironment),
        ids::TASK_EXPIRED => (1, DenyCode::Expired),
        ids::NOT_GRANTED => (2, DenyCode::NotGranted),
        ids::BACKUP_DESTROY_SEPARATION | ids::BACKUP_DESTROY_PURPOSE | ids::BACKUP_ADMIN_NO_PRIMARY_DESTROY => (3, DenyCode::BackupSeparation),
        _ => (4, DenyCode::PolicyDenied),
    }
}

/// Fail closed on any evaluation error; name the policies but not the values involved
/// (values may come from the request and must not be echoed into logs).
fn check_errors<'e>(errors: impl Iterator<Item = &'e AuthorizationError>) -> Result<(), String> {
    let mut ids: Vec<String> = errors
        .map(|e| match e {
            AuthorizationError::PolicyEvaluationError(e) => {
                let id = e.policy_id().to_string();
                id.strip_prefix(APPROVAL_MARK).map(str::to_owned).unwrap_or(id)
            }
        })
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort();
    ids.dedup();
    Err(format!(
        "policy {} could not be evaluated for this request, so it is denied; check the policy with `airlock policy check` \
         and guard optional attributes with `has` / `hasTag`",
        ids.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(", ")
    ))
}

/// Quote an agent-influenced string for a reason: escaped and truncated.
fn quote(s: &str) -> String {
    if s.chars().count() > MAX_QUOTED {
        let cut: String = s.chars().take(MAX_QUOTED).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

fn grant_list<'g>(grants: impl Iterator<Item = &'g Grant>) -> String {
    let list: Vec<String> = grants.map(ToString::to_string).collect();
    format!("[{}]", list.join(", "))
}

/// Flatten JSON arguments into `path -> string` tags (see the schema for the format).
fn flatten_arguments(value: &serde_json::Value) -> Result<BTreeMap<String, String>, String> {
    fn walk(v: &serde_json::Value, path: &mut String, depth: usize, out: &mut BTreeMap<String, String>) -> Result<(), String> {
        use serde_json::Value;
        if depth > MAX_ARGUMENT_DEPTH {
            return Err(format!(
                "the request's arguments are nested deeper than {MAX_ARGUMENT_DEPTH} levels, too deep for policy to \
                 check; the request is denied"
            ));
        }
        let child = |key: &str, v: &Value, path: &mut String, out: &mut BTreeMap<String, String>| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let r = walk(v, path, depth + 1, out);
            path.truncate(len);
            r
        };
        let leaf = match v {
            Value::Object(map) => {
                for (k, v) in map {
                    child(k, v, path, out)?;
                }
                return Ok(());
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    child(&i.to_string(), v, path, out)?;
                }
                return Ok(());
            }
            Value::String(s) => s.clone(),
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
        };
        if out.len() >= MAX_ARGUMENT_LEAVES {
            return Err(format!(
                "the request has more than {MAX_ARGUMENT_LEAVES} argument values, too many for policy to check; the \
                 request is denied"
            ));
        }
        if out.insert(path.clone(), leaf).is_some() {
            return Err(format!(
                "two of the request's arguments flatten to the same name {}, so policy cannot tell them apart; the \
                 request is denied",
                quote(path)
            ));
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    let mut path = String::new();
    walk(value, &mut path, 0, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PolicyEngine>();
    }

    #[test]
    fn unknown_capability_is_evaluated_as_destroy() {
        assert_eq!(effective_class(&Capability::Operation("x".into())), Capability::Destroy);
        assert_eq!(effective_class(&Capability::Read), Capability::Read);
        assert_eq!(effective_class(&Capability::Write), Capability::Write);
    }

    #[test]
    fn arguments_flatten_to_dotted_paths() {
        let tags = flatten_arguments(&json!({"a": {"b": 1, "c": [true, null, "x"]}, "s": "v"})).unwrap();
        let expected: BTreeMap<String, String> =
            [("a.b", "1"), ("a.c.0", "true"), ("a.c.1", "null"), ("a.c.2", "x"), ("s", "v")].into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        assert_eq!(tags, expected);
    }

    #[test]
    fn colliding_argument_paths_fail_closed() {
        let err = flatten_arguments(&json!({"a": {"b": "/etc/passwd"}, "a.b": "harmless"})).unwrap_err();
        assert!(err.contains("same name"), "{err}");
    }

    #[test]
    fn oversized_arguments_fail_closed() {
        let many: serde_json::Map<String, serde_json::Value> = (0..=MAX_ARGUMENT_LEAVES).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(flatten_arguments(&serde_json::Value::Object(many)).is_err());
        let mut deep = json!("leaf");
        for _ in 0..=MAX_ARGUMENT_DEPTH + 1 {
            deep = json!({ "d": deep });
        }
        assert!(flatten_arguments(&deep).is_err());
    }

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(MAX_QUOTED + 50);
        let q = quote(&long);
        assert!(q.ends_with('…'));
        assert!(q.len() < long.len());
    }
}
