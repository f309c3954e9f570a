//! The request path, top to bottom: one agent request in, one answer out.
//!
//! ```text
//! route → authenticate → environment binding → one meaning → read body → raw credentials
//!       → lookup → classify → decide / approve → durable audit → fetch secret, inject
//!       → forward → redact → MCP filter → audit outcome
//! ```
//!
//! [`Gateway::handle`] builds the request's context (`RequestCx`), runs `enforce` — those
//! fixed phases, each returning a [`Refusal`] with `?`, in one function of about a page;
//! read it first — and ends in `finish`, the one exit, which writes exactly one decision or
//! outcome record per request id and builds the answer. [`Gateway::admit`] is the
//! synchronous front half (everything up to the decision), which benchmarks call on its
//! own. Helpers below them build the upstream request and the answers to the agent.
//!
//! This module must never forward on doubt (every failure before the upstream is a
//! refusal), never let anything the agent sends choose the upstream host, never let the
//! agent's own credentials or routing headers reach the upstream, and never put a secret
//! value into an answer, an error or an audit record.

// A refusal is the cold path and carries everything its audit record needs.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_policy::{Decision, PolicyEngine};
use airlock_store::{ApprovalRecord, ApprovalStatus, AuditEvent, Store};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, request};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::percent_decode_str;
use serde_json::json;
use zeroize::Zeroizing;

use crate::approvals::{Approvals, request_hash};
use crate::audit::AuditSink;
use crate::classify::{Operation, class_rank};
use crate::client::{BoxError, ConnectTimeout, ReqBody, UpstreamClient};
use crate::codes::RefusalCode;
use crate::config::ApprovalMode;
use crate::config::{Config, Injection, Upstream, is_hop_by_hop};
use crate::error::Error;
use crate::inject::{inject, truncate};
use crate::inventory::lookup::LookupContext;
use crate::inventory::{Attribution, Inventory};
use crate::ports::{Secret, SecretCache, SecretSource, TaskIdentity, TokenVerifier};
use crate::rawcred::{Finding, ScannerDetector};
use crate::redact::{Needles, RedactBody};
use crate::route::{RouteError, route};
use crate::token_place::query_name;

/// The body of every answer the gateway gives.
pub type ResBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub use crate::token_place::TOKEN_HEADER;
/// The response header carrying the request id (also the audit record id).
pub const REQUEST_ID_HEADER: &str = "x-airlock-request-id";

/// The gateway: configuration, clients and the services each request consults.
pub struct Gateway {
    upstreams: HashMap<String, Arc<UpstreamRuntime>>,
    verifier: Arc<dyn TokenVerifier>,
    policy: Arc<PolicyEngine>,
    secrets: SecretCache,
    audit: Arc<dyn AuditSink>,
    config_path: std::path::PathBuf,
    inventory: Inventory,
    classify_limit: usize,
    approvals: Option<Arc<Approvals>>,
    raw_credentials: Arc<dyn RawCredentialCheck>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("upstreams", &self.upstreams.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

/// One upstream at run time: its configuration, its pooled client, and the injection
/// material prepared from its current secret.
struct UpstreamRuntime {
    cfg: Upstream,
    client: UpstreamClient,
    prepared: Mutex<Option<Arc<Prepared>>>,
}

/// Injection material and redaction needles derived from one secret value.
struct Prepared {
    secret: Arc<Secret>,
    header: Option<(HeaderName, HeaderValue)>,
    query: Option<Zeroizing<String>>,
    needles: Option<Arc<Needles>>,
}

/// A request that passed every check up to and including the policy decision.
#[derive(Debug)]
pub struct Admitted {
    /// The task on whose behalf it is made.
    pub task: Arc<TaskIdentity>,
    /// The upstream it goes to.
    pub upstream: String,
    /// What it does: its most dangerous operation (the one a refusal or approval is about).
    pub operation: Operation,
    /// Where [`Admitted::operation`]'s resource lives, as policy saw it.
    pub attribution: Attribution,
    /// Every distinct operation the request performs (GraphQL fields, MCP batch members).
    pub operations: Vec<Operation>,
    /// The policies that allowed it.
    pub policies: Vec<String>,
    /// The raw path below the upstream prefix (empty or starting with `/`).
    pub rest: String,
    /// The approval this request used, if it needed one.
    pub approval_id: Option<String>,
}

/// A refusal: the answer to the agent and what goes in the audit record.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never contains a secret or a token).
    pub message: String,
    /// Ids of the policies that determined it.
    pub policies: Vec<String>,
    /// The task, if the token was verified.
    pub task: Option<Arc<TaskIdentity>>,
    /// The upstream, if routing got that far.
    pub upstream: Option<String>,
    /// The operation, if classification got that far.
    pub operation: Option<String>,
    /// The approval request this refusal is about (`approval_required`, `approval_denied`, …).
    pub approval_id: Option<String>,
}

impl Refusal {
    /// A refusal with `code`, answered with the code's status ([`RefusalCode`]).
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code: code.as_str(),
            message: message.into(),
            policies: Vec::new(),
            task: None,
            upstream: None,
            operation: None,
            approval_id: None,
        }
    }
}

pub use crate::rawcred::RawCredentialCheck;

/// A route, an authenticated task and its environment binding: steps 1–3.
struct Authed {
    rt: Arc<UpstreamRuntime>,
    task: Arc<TaskIdentity>,
    segments: Vec<String>,
    rest: String,
    now: i64,
}

/// Why [`Gateway::decide`] did not admit a request.
enum Stop {
    /// Refused outright.
    Refused(Refusal),
    /// Allowed by everything except rules a human approval lifts.
    NeedsApproval(Box<NeedsApproval>),
}

/// A request that needs an approval: what it would be admitted as, and why it is held.
struct NeedsApproval {
    admitted: Admitted,
    reason: String,
}

/// (severity, class rank, production) of the operation that determines the answer, its
/// index, its decision and its attribution.
type Worst = ((u8, u8, bool), usize, Decision, Attribution);

/// A boxed, `Send` future (keeps the enforcement path's future `Send` for every body type).
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Most bytes of a `tools/list` answer buffered for filtering.
const TOOLS_LIST_CAP: usize = 8 << 20;
/// How often a held request re-reads its approval (a decision in this process wakes it at once).
const HOLD_POLL: Duration = Duration::from_millis(150);

impl Gateway {
    /// Build the gateway from a validated configuration and its collaborators.
    ///
    /// Approvals need a store: add it with [`Gateway::with_approvals`]; without one, a
    /// request that needs approval is refused with `approval_required` and nothing to approve.
    pub fn new(
        config: &Config,
        verifier: Arc<dyn TokenVerifier>,
        secrets: Arc<dyn SecretSource>,
        policy: Arc<PolicyEngine>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, Error> {
        let mut upstreams = HashMap::new();
        for u in &config.upstreams {
            let client = UpstreamClient::new(u)?;
            upstreams.insert(u.name.to_string(), Arc::new(UpstreamRuntime { cfg: u.clone(), client, prepared: Mutex::new(None) }));
        }
        Ok(Self {
            upstreams,
            verifier,
            policy,
            secrets: SecretCache::new(secrets, config.secret_cache_ttl),
            audit,
            config_path: config.path.clone(),
            inventory: config.inventory.clone(),
            classify_limit: config.classify_limit,
            approvals: None,
            raw_credentials: ScannerDetector::shared().map_err(Error::Scanner)?,
        })
    }

    /// Keep approval requests in `store` (per-upstream modes and lifetimes from the config).
    pub fn with_approvals(mut self, store: Arc<dyn Store>) -> Self {
        let settings = self.upstreams.iter().map(|(n, rt)| (n.clone(), rt.cfg.approval)).collect();
        self.approvals = Some(Arc::new(Approvals::new(store, settings)));
        self
    }

    /// The inventory lookups and their counters, for the admin status endpoint
    /// ([`crate::server::AdminState::with_lookups`]).
    pub fn inventory_lookups(&self) -> Vec<(String, Arc<crate::inventory::lookup::Lookup>)> {
        self.inventory.lookups()
    }

    /// The approval service, to share with the admin API ([`crate::server::AdminState::with_approvals`]).
    pub fn approvals(&self) -> Option<Arc<Approvals>> {
        self.approvals.clone()
    }

    /// Replace the default raw-credential check ([`crate::rawcred::ScannerDetector`]).
    pub fn with_credential_check(mut self, check: Arc<dyn RawCredentialCheck>) -> Self {
        self.raw_credentials = check;
        self
    }

    /// Check at startup that every upstream's secret exists, belongs to the upstream's
    /// environment and (if the vault records one) to that upstream. A mismatch is a
    /// configuration error pointing at the `secret` line.
    pub async fn check_secrets(&self) -> Result<(), Error> {
        for rt in self.upstreams.values() {
            let u = &rt.cfg;
            let at = format!("{}:{}", self.config_path.display(), u.secret_line);
            let secret = self
                .secrets
                .get(&u.secret, &u.environment)
                .await
                .map_err(|e| Error::Secret(format!("{at}: upstream {:?}: secret {:?}: {}", u.name.as_str(), u.secret, e.message)))?;
            if let Err(why) = secret_fits(&secret, u) {
                return Err(Error::Secret(format!("{at}: upstream {:?}: {why}", u.name.as_str())));
            }
        }
        self.inventory.check_secrets(&self.secrets, &self.config_path).await
    }

    /// Handle one agent request. This is the enforcement path.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut cx = RequestCx { id: crate::audit::new_id(), started: Instant::now(), auth: None, admitted: None, recorded: false, masked: 0 };
        let (parts, body) = req.into_parts();
        let result = self.enforce(&mut cx, &parts, body.map_err(Into::into).boxed_unsync()).await;
        self.finish(&cx, &parts, result)
    }

    /// The fixed phases of a request, top to bottom. Each returns a [`Refusal`] with `?`;
    /// [`Gateway::finish`] turns it into the one record and the answer. `cx` says how far
    /// the request got (authenticated, admitted, durably recorded).
    async fn enforce(&self, cx: &mut RequestCx, parts: &request::Parts, body: ReqBody) -> Result<Response<ResBody>, Refusal> {
        // 1–3. Route, authenticate, bind environment.
        let auth = self.authenticate(parts)?;
        let rt = auth.rt.clone();
        let up = &rt.cfg;
        cx.auth = Some((auth.task.clone(), up.name.to_string()));

        // One request, one meaning: no method override, no second GraphQL document in the
        // URL, no MCP request that is not a POST; the declared body length within the cap.
        check_one_meaning(up, parts)?;

        // 4–5. GraphQL and MCP bodies are read to classify them (up to the classification
        //      cap); every body's first bytes are read for the raw-credential check and put
        //      back in front of the rest, which still streams.
        let (mut body, buffered) = self.read_body(parts, body, up).await?;
        self.no_raw_credential(cx, parts, &auth, buffered.as_deref())?;
        let buffered = buffered.filter(|_| up.classifier.needs_body());

        // Before 6–7: resource ids the static inventory does not place are looked up on the
        // upstream ([upstream.inventory_lookup]: read-only credential, cached). A lookup that
        // fails leaves its id unattributed, so a destroy of it counts as production.
        let lookup =
            LookupContext { upstream: up, client: &rt.client, secrets: &self.secrets, audit: &*self.audit, request_id: &cx.id, task_id: &auth.task.task_id };
        self.inventory.resolve(lookup, parts, &auth.segments, buffered.as_deref()).await;

        // 6–7. Classify once, attribute each operation's resource, decide; a request that
        //      needs a human goes through the approval gate with its exact body.
        let admitted = match self.decide(&auth, parts, buffered.as_deref(), None) {
            Ok(a) => a,
            Err(Stop::Refused(r)) => return Err(r),
            Err(Stop::NeedsApproval(pending)) => {
                let bytes = match buffered {
                    Some(b) => b,
                    None => self.buffer(parts, body, up).await?,
                };
                body = full_body(bytes.clone());
                self.approval_gate(&cx.id, parts, *pending, &bytes).await?
            }
        };

        // 8. Durable audit record, before anything reaches the upstream. From here on a
        //    refusal is the request's outcome, never a second decision record.
        let event = self.request_event(&cx.id, parts, &admitted);
        cx.admitted = Some(admitted);
        if let Err(e) = self.audit.record(event).await {
            return Err(Refusal::new(RefusalCode::AuditUnavailable, format!("the request was not forwarded because it could not be audited: {e}")));
        }
        cx.recorded = true;
        let admitted = cx.admitted.as_ref().expect("admitted above");

        // 9–10. Fetch the secret, prepare injection and redaction, build the upstream
        //       request: fixed host, cleaned headers, injected credential.
        let prepared = self.prepare(&rt).await?;
        let outbound = build_upstream_request(up, parts, &admitted.rest, &prepared, &cx.id, body)?;

        // 11. Forward (pooled client, never follows redirects), bounded by the request timeout.
        let response = match tokio::time::timeout(up.request_timeout, rt.client.client.request(outbound)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(upstream_failure(&e, prepared.needles.as_deref())),
            Err(_) => return Err(Refusal::new(RefusalCode::UpstreamTimeout, format!("upstream {} did not answer within {:?}", up.name, up.request_timeout))),
        };

        // 12. Redact echoes of the secret from headers and (streaming) body; withhold what
        //     cannot be inspected.
        let (mut head, body, masked) = redact_response(&mut cx.masked, parts, &prepared, response)?;
        head.headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&cx.id).expect("uuid is a header value"));

        // 13. MCP: the agent only sees the tools its task may call.
        let mut body = body;
        if let Some(mcp) = up.classifier.as_mcp()
            && crate::mcp::lists_tools(&admitted.operations)
            && head.status.is_success()
        {
            cx.masked = masked.load(Ordering::Relaxed);
            body = self.filter_tools(mcp, &auth, admitted, &mut head, body).await?;
        }

        // 14. The outcome is audited when the body ends or is dropped.
        let guard = OutcomeGuard {
            audit: self.audit.clone(),
            event: Some(self.outcome_event(&cx.id, admitted)),
            status: head.status.as_u16(),
            bytes: 0,
            started: cx.started,
            masked,
        };
        Ok(Response::from_parts(head, CountingBody { inner: body, guard: Some(guard) }.boxed_unsync()))
    }

    /// The one exit of every request: an answer passes through; a refusal gets exactly one
    /// record under the request id — the decision (`denied`) before the durable record, the
    /// outcome after it, none when the audit store itself failed — and its JSON answer,
    /// with what the request got as far as (task, upstream, operation).
    fn finish(&self, cx: &RequestCx, parts: &request::Parts, result: Result<Response<ResBody>, Refusal>) -> Response<ResBody> {
        let mut r = match result {
            Ok(resp) => return resp,
            Err(r) => r,
        };
        if let Some((task, upstream)) = &cx.auth {
            r.task.get_or_insert_with(|| task.clone());
            r.upstream.get_or_insert_with(|| upstream.clone());
        }
        match &cx.admitted {
            Some(a) if cx.recorded => {
                let r = with_context(r, a);
                self.outcome(&cx.id, a, r.status.as_u16(), 0, cx.started, r.code, cx.masked);
                answer(&cx.id, &r)
            }
            // The decision could not be recorded: nothing is forwarded, and nothing more is
            // written to a store that just failed.
            Some(a) => answer(&cx.id, &with_context(r, a)),
            None => self.refuse(&cx.id, parts, r),
        }
    }

    /// Steps 4–5 (reading): the buffered body for GraphQL/MCP (or the first bytes of a
    /// streamed body) and the body to forward.
    async fn read_body(&self, parts: &request::Parts, body: ReqBody, up: &Upstream) -> Result<(ReqBody, Option<Bytes>), Refusal> {
        if up.classifier.needs_body() {
            let b = self.buffer(parts, body, up).await?;
            return Ok((full_body(b.clone()), Some(b)));
        }
        if may_have_body(parts) {
            let p = self.read_head(body, up).await?;
            return Ok((p.body, Some(p.head)));
        }
        Ok((body, None))
    }

    /// Step 5 (checking): a credential airlock did not issue never leaves — the agent found
    /// a secret. Raises an alert and refuses.
    fn no_raw_credential(&self, cx: &RequestCx, parts: &request::Parts, auth: &Authed, seen: Option<&[u8]>) -> Result<(), Refusal> {
        let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        match self.raw_credentials.check(&parts.headers, target, seen) {
            Some(found) => Err(self.raw_credential(&cx.id, auth, &found)),
            None => Ok(()),
        }
    }

    /// Steps 1–7 for a request whose body is not needed (REST): route, authenticate, bind
    /// environment, classify, decide. A request that needs an approval is refused here with
    /// `approval_required` (only [`Gateway::handle`] creates approval requests).
    ///
    /// Synchronous and side-effect free (no I/O, no audit), so it can be measured alone.
    pub fn admit(&self, parts: &request::Parts) -> Result<Admitted, Refusal> {
        let auth = self.authenticate(parts)?;
        match self.decide(&auth, parts, None, None) {
            Ok(a) => Ok(a),
            Err(Stop::Refused(r)) => Err(r),
            Err(Stop::NeedsApproval(p)) => {
                let mut r = Refusal::new(RefusalCode::ApprovalRequired, p.reason);
                r.policies = p.admitted.policies.clone();
                Err(with_context(r, &p.admitted))
            }
        }
    }

    /// Steps 1–3: route, authenticate, bind the task to the upstream's environment.
    fn authenticate(&self, parts: &request::Parts) -> Result<Authed, Refusal> {
        // 1. Route: origin-form only, upstream from the first segment, no escape from its prefix.
        let route = route(&parts.uri).map_err(|e| match e {
            RouteError::NotOriginForm => Refusal::new(
                RefusalCode::AbsoluteUri,
                "only origin-form request targets (/<upstream>/<path>) are accepted; the host is never chosen by the request",
            ),
            RouteError::NoUpstream => Refusal::new(RefusalCode::UnknownUpstream, "request paths start with a configured upstream name: /<upstream>/<path>"),
            RouteError::Traversal(why) => Refusal::new(RefusalCode::PathTraversal, format!("the path would leave the upstream's prefix: {why}")),
        })?;
        let Some(rt) = self.upstreams.get(route.upstream) else {
            return Err(Refusal::new(RefusalCode::UnknownUpstream, format!("no upstream named {:?} is configured", truncate(route.upstream, 64))));
        };
        let up = &rt.cfg;
        let with_upstream = |mut r: Refusal| {
            r.upstream = Some(up.name.to_string());
            r
        };

        // 2. Authenticate: the task token from X-Airlock-Token or where the upstream's credential goes.
        let token = crate::token_place::find_token(&parts.headers, route.query, &[&up.injection]).ok_or_else(|| {
            with_upstream(Refusal::new(RefusalCode::MissingToken, format!("no task token: send it in {TOKEN_HEADER} or where {}'s API key goes", up.name)))
        })?;
        let task = self.verifier.verify(&token).map_err(|e| with_upstream(Refusal::new(e.code, e.message)))?;
        let now = unix_now();
        if task.expires_at <= now {
            let mut r = with_upstream(Refusal::new(RefusalCode::TokenExpired, "the task token has expired; start a new task"));
            r.task = Some(task);
            return Err(r);
        }

        // 3. Environment binding: a task never acts outside its environment.
        if task.environment != up.environment {
            let mut r = with_upstream(Refusal::new(
                RefusalCode::CrossEnvironment,
                format!("task is bound to environment {:?} but upstream {} serves {:?}", task.environment.as_str(), up.name, up.environment.as_str()),
            ));
            r.task = Some(task);
            return Err(r);
        }
        Ok(Authed { rt: rt.clone(), task, segments: route.segments, rest: route.rest.to_owned(), now })
    }

    /// Steps 6–7: classify every operation of the request, attribute each one's resource
    /// (inventory; an unattributable destroy is production) and ask policy about each. The
    /// request is as dangerous as its most dangerous operation: any deny refuses it, any
    /// approval rule holds it. `approval` is the id of a consumed approval for this exact
    /// request (policy then sees `approved = true`; cross-environment still denies).
    fn decide(&self, auth: &Authed, parts: &request::Parts, body: Option<&[u8]>, approval: Option<&str>) -> Result<Admitted, Stop> {
        let up = &auth.rt.cfg;
        let refusal = |r: Refusal| with_auth(r, auth);
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let operations = up.classifier.classify_all(&parts.method, &auth.segments, content_type, body).map_err(|e| {
            Stop::Refused(refusal(Refusal::new(
                RefusalCode::UnparsableRequest,
                format!("the request body cannot be classified, so it is not forwarded: {}", e.0),
            )))
        })?;

        // (severity, class rank, production) of the operation that determines the answer.
        let mut worst: Option<Worst> = None;
        let mut allowed_by: Vec<String> = Vec::new();
        for (i, op) in operations.iter().enumerate() {
            let attribution = self.inventory.attribute(up.name.as_str(), &up.environment, op);
            let decision = self.policy.decide(&airlock_policy::Request {
                agent: auth.task.agent.as_str(),
                task_id: &auth.task.task_id,
                task_environment: &auth.task.environment,
                grants: &auth.task.grants,
                purpose: auth.task.purpose.as_deref(),
                expires_at: auth.task.expires_at,
                upstream: up.name.as_str(),
                upstream_environment: &up.environment,
                operation: &op.name,
                capability: &op.capability,
                resource_id: op.resource_id.as_deref(),
                resource_environment: &attribution.environment,
                resource_tier: attribution.tier,
                approved: approval.is_some(),
                now: auth.now,
                arguments: op.arguments.as_ref(),
            });
            let severity = match decision {
                Decision::Allow { ref policies } => {
                    for p in policies {
                        if !allowed_by.contains(p) {
                            allowed_by.push(p.clone());
                        }
                    }
                    0
                }
                Decision::NeedsApproval { .. } => 1,
                Decision::Deny { .. } => 2,
            };
            let key = (severity, class_rank(&op.capability), attribution.environment.is_production());
            if worst.as_ref().is_none_or(|w| key > w.0) {
                worst = Some((key, i, decision, attribution));
            }
        }
        let Some((_, i, decision, attribution)) = worst else {
            return Err(Stop::Refused(refusal(Refusal::new(RefusalCode::UnparsableRequest, "the request performs no operation"))));
        };
        let operation = operations[i].clone();
        let admitted = |policies: Vec<String>| Admitted {
            task: auth.task.clone(),
            upstream: up.name.to_string(),
            operation: operation.clone(),
            attribution: attribution.clone(),
            operations: operations.clone(),
            policies,
            rest: auth.rest.clone(),
            approval_id: approval.map(str::to_owned),
        };
        match decision {
            Decision::Allow { .. } => Ok(admitted(allowed_by)),
            Decision::NeedsApproval { reason, policies } => Err(Stop::NeedsApproval(Box::new(NeedsApproval { admitted: admitted(policies), reason }))),
            Decision::Deny { code, reason, policies } => {
                let mut r = refusal(Refusal::new(RefusalCode::from(code), reason));
                r.policies = policies;
                r.operation = Some(operation.name.clone());
                r.approval_id = approval.map(str::to_owned);
                Err(Stop::Refused(r))
            }
        }
    }

    /// Read the whole request body, at most the classification cap, within the request timeout.
    fn buffer<'a>(&'a self, parts: &'a request::Parts, body: ReqBody, up: &'a Upstream) -> BoxFuture<'a, Result<Bytes, Refusal>> {
        Box::pin(async move { self.buffer_inner(parts, body, up).await })
    }

    async fn buffer_inner(&self, parts: &request::Parts, body: ReqBody, up: &Upstream) -> Result<Bytes, Refusal> {
        let max_body = usize::try_from(up.max_body).unwrap_or(usize::MAX);
        let limit = self.classify_limit.min(max_body);
        // Name the limit that binds: the upstream's body cap, or the classification cap.
        let too_big = || {
            if max_body <= self.classify_limit {
                Refusal::new(RefusalCode::BodyTooLarge, format!("request body exceeds this upstream's limit of {max_body} bytes; nothing was forwarded"))
            } else {
                Refusal::new(
                    RefusalCode::ClassifyLimit,
                    format!(
                        "the request body must be read to classify it (or to approve it), and it exceeds the {limit}-byte classification limit ([gateway] classify_limit)"
                    ),
                )
            }
        };
        if content_length(&parts.headers).is_some_and(|l| l > limit as u64) {
            return Err(too_big());
        }
        match tokio::time::timeout(up.request_timeout, read_capped(body, limit)).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(Capped::TooBig)) => Err(too_big()),
            Ok(Err(Capped::Failed(_))) => Err(Refusal::new(RefusalCode::BodyReadError, "the request body could not be read")),
            Err(_) => Err(Refusal::new(RefusalCode::BodyTimeout, format!("the request body did not arrive within {:?}", up.request_timeout))),
        }
    }

    /// The first `classify_limit` bytes of a streamed body (at most `max_body`), within the
    /// request timeout, and the body to forward ([`crate::prefix`]).
    ///
    /// When `max_body` is within the prefix window, one byte more than `max_body` is read, so
    /// a body over the cap is refused here, before anything is forwarded, instead of being
    /// cut off mid-stream (an upstream could act on the truncated body).
    async fn read_head(&self, body: ReqBody, up: &Upstream) -> Result<crate::prefix::Prefix, Refusal> {
        let max_body = usize::try_from(up.max_body).unwrap_or(usize::MAX);
        let limit = self.classify_limit.min(max_body.saturating_add(1));
        match tokio::time::timeout(up.request_timeout, crate::prefix::read_prefix(body, limit)).await {
            Ok(Ok(p)) if p.head.len() > max_body => Err(Refusal::new(
                RefusalCode::BodyTooLarge,
                format!("request body exceeds this upstream's limit of {} bytes; nothing was forwarded", up.max_body),
            )),
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(Refusal::new(RefusalCode::BodyReadError, "the request body could not be read")),
            Err(_) => Err(Refusal::new(RefusalCode::BodyTimeout, format!("the request body did not arrive within {:?}", up.request_timeout))),
        }
    }

    /// Refuse a request carrying a credential airlock did not issue, and raise an alert.
    fn raw_credential(&self, request_id: &str, auth: &Authed, found: &Finding) -> Refusal {
        self.audit.record_later(AuditEvent {
            id: crate::audit::new_id(),
            ts_ms: unix_ms(),
            actor: format!("agent:{}", auth.task.agent),
            action: "gateway.alert".into(),
            subject: format!("{}/raw_credential", auth.rt.cfg.name),
            outcome: "denied".into(),
            task_id: Some(auth.task.task_id.clone()),
            detail: json!({
                "alert": "raw_credential",
                "kind": found.kind,
                "location": found.location,
                "request_id": request_id,
                "upstream": auth.rt.cfg.name.as_str(),
            }),
        });
        tracing::warn!(task = %auth.task.task_id, kind = %found.kind, location = %found.location, "request carried a credential airlock did not issue; refused");
        let r = Refusal::new(
            RefusalCode::RawCredential,
            format!(
                "the request carries a {} ({}) that airlock did not issue; it was not forwarded. Use the task token only, and report where the credential was found so it can be moved into the vault",
                found.kind, found.location
            ),
        );
        with_auth(r, auth)
    }

    /// A request that needs a human: use an approval given for this exact request (once),
    /// or create / reuse an approval request and answer at once (`reject`) or wait (`hold`).
    fn approval_gate<'a>(
        &'a self,
        request_id: &'a str,
        parts: &'a request::Parts,
        pending: NeedsApproval,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Admitted, Refusal>> {
        Box::pin(async move { self.approval_gate_inner(request_id, parts, pending, body).await })
    }

    async fn approval_gate_inner(&self, request_id: &str, parts: &request::Parts, pending: NeedsApproval, body: &[u8]) -> Result<Admitted, Refusal> {
        let a = &pending.admitted;
        let Some(approvals) = self.approvals.clone() else {
            let mut r =
                Refusal::new(RefusalCode::ApprovalRequired, format!("{}; this gateway has no approval store, so nothing can approve it", pending.reason));
            r.policies = a.policies.clone();
            return Err(with_context(r, a));
        };
        let store = approvals.store().clone();
        let target = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let hash = request_hash(parts.method.as_str(), &a.upstream, target, body);
        let settings = approvals.settings(&a.upstream);
        let task_id = a.task.task_id.clone();

        // An approval given for this exact request passes it now, exactly once.
        match consume_approval(&*store, &task_id, &hash).await {
            Ok(Some(rec)) => return self.after_approval(parts, body, &rec),
            Ok(None) => {}
            Err(e) => return Err(with_context(store_down(e), a)),
        }

        // Otherwise reuse the open request for it, or open one.
        let now = unix_now();
        let rec = match store.find_approval(&task_id, &hash, now).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let rec = ApprovalRecord {
                    id: crate::audit::new_id(),
                    created_at: now,
                    task_id: task_id.clone(),
                    agent: a.task.agent.to_string(),
                    upstream: a.upstream.clone(),
                    // The approver sees every operation the approval releases, not only
                    // the one that asked for it: the approval covers this exact request.
                    operation: operations_shown(&a.operations),
                    resource: resources_shown(&a.operations).or_else(|| a.operation.resource_id.clone()),
                    environment: a.attribution.environment.to_string(),
                    request_hash: hash.clone(),
                    reason: pending.reason.clone(),
                    status: ApprovalStatus::Pending,
                    decided_by: None,
                    decided_at: None,
                    decision_note: None,
                    expires_at: now + settings.ttl.max(settings.hold_timeout).as_secs() as i64,
                    used_at: None,
                };
                if let Err(e) = store.create_approval(&rec).await {
                    return Err(with_context(store_down(e), a));
                }
                let event = AuditEvent {
                    id: crate::audit::new_id(),
                    ts_ms: unix_ms(),
                    actor: format!("agent:{}", a.task.agent),
                    action: "gateway.approval_requested".into(),
                    subject: format!("{}/{}", a.upstream, a.operation.name),
                    outcome: "pending".into(),
                    task_id: Some(task_id.clone()),
                    detail: json!({
                        "approval_id": rec.id,
                        "request_id": request_id,
                        "operation": rec.operation,
                        "operations": a.operations.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
                        "resource": rec.resource,
                        "environment": rec.environment,
                        "tier": a.attribution.tier.as_str(),
                        "reason": rec.reason,
                        "policies": a.policies,
                        "request_hash": rec.request_hash,
                        "mode": match settings.mode { ApprovalMode::Reject => "reject", ApprovalMode::Hold => "hold" },
                    }),
                };
                if let Err(e) = self.audit.record(event).await {
                    let r = Refusal::new(RefusalCode::AuditUnavailable, format!("the approval request could not be audited: {e}"));
                    return Err(with_context(r, a));
                }
                rec
            }
            Err(e) => return Err(with_context(store_down(e), a)),
        };

        if settings.mode == ApprovalMode::Reject {
            return Err(approval_refusal(
                a,
                &rec.id,
                RefusalCode::ApprovalRequired,
                format!(
                    "{}. Approval request {} was sent to an admin (`airlock approve {}`); once approved, send exactly the same request again within {}s and it passes once",
                    pending.reason,
                    rec.id,
                    rec.id,
                    settings.ttl.as_secs()
                ),
            ));
        }

        // hold: keep the request open until a decision or the timeout.
        let deadline = Instant::now() + settings.hold_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(approval_refusal(
                    a,
                    &rec.id,
                    RefusalCode::ApprovalTimeout,
                    format!("no admin decided approval request {} within {}s; the request was not forwarded", rec.id, settings.hold_timeout.as_secs()),
                ));
            }
            approvals.wait_decided(left.min(HOLD_POLL)).await;
            let current = match store.get_approval(&rec.id).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(approval_refusal(a, &rec.id, RefusalCode::ApprovalRequired, format!("approval request {} disappeared", rec.id)));
                }
                Err(e) => return Err(with_context(store_down(e), a)),
            };
            match current.status {
                ApprovalStatus::Pending => continue,
                ApprovalStatus::Approved => match consume_approval(&*store, &task_id, &hash).await {
                    Ok(Some(used)) => return self.after_approval(parts, body, &used),
                    Ok(None) => {
                        return Err(approval_refusal(
                            a,
                            &rec.id,
                            RefusalCode::ApprovalUsed,
                            format!("approval {} was already used by an identical request", rec.id),
                        ));
                    }
                    Err(e) => return Err(with_context(store_down(e), a)),
                },
                ApprovalStatus::Denied => {
                    let why = current.decision_note.as_deref().unwrap_or("no reason given");
                    return Err(approval_refusal(a, &rec.id, RefusalCode::ApprovalDenied, format!("an admin denied approval request {}: {why}", rec.id)));
                }
                ApprovalStatus::Used => {
                    return Err(approval_refusal(
                        a,
                        &rec.id,
                        RefusalCode::ApprovalUsed,
                        format!("approval {} was already used by an identical request", rec.id),
                    ));
                }
            }
        }
    }

    /// An approval for this exact request was consumed: authenticate again (the token may
    /// have been revoked while it waited) and decide again with `approved = true`.
    fn after_approval(&self, parts: &request::Parts, body: &[u8], rec: &ApprovalRecord) -> Result<Admitted, Refusal> {
        let auth = self.authenticate(parts).map_err(|mut r| {
            r.approval_id = Some(rec.id.clone());
            r
        })?;
        match self.decide(&auth, parts, Some(body), Some(&rec.id)) {
            Ok(a) => Ok(a),
            Err(Stop::Refused(r)) => Err(r),
            Err(Stop::NeedsApproval(p)) => {
                let mut r = Refusal::new(RefusalCode::ApprovalRequired, format!("{} (still, after approval {})", p.reason, rec.id));
                r.approval_id = Some(rec.id.clone());
                Err(with_context(r, &p.admitted))
            }
        }
    }

    /// Buffer a `tools/list` answer and keep only the tools the task may call: those whose
    /// call, on a resource in the upstream's own environment, policy would allow or hold
    /// for approval. An answer that cannot be filtered is withheld.
    fn filter_tools<'a>(
        &'a self,
        mcp: &'a crate::mcp::McpClassifier,
        auth: &'a Authed,
        admitted: &'a Admitted,
        head: &'a mut http::response::Parts,
        body: ResBody,
    ) -> BoxFuture<'a, Result<ResBody, Refusal>> {
        Box::pin(async move { self.filter_tools_inner(mcp, auth, admitted, head, body).await })
    }

    async fn filter_tools_inner(
        &self,
        mcp: &crate::mcp::McpClassifier,
        auth: &Authed,
        admitted: &Admitted,
        head: &mut http::response::Parts,
        body: ResBody,
    ) -> Result<ResBody, Refusal> {
        let up = &auth.rt.cfg;
        let withheld = |why: String| {
            Refusal::new(RefusalCode::UnfilterableResponse, format!("the tools/list answer cannot be filtered to the task's tools, so it is withheld: {why}"))
        };
        let event_stream = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let bytes = match tokio::time::timeout(up.request_timeout, read_capped(body, TOOLS_LIST_CAP)).await {
            Ok(Ok(b)) => b,
            Ok(Err(Capped::TooBig)) => return Err(withheld(format!("it is larger than {TOOLS_LIST_CAP} bytes"))),
            Ok(Err(Capped::Failed(e))) => return Err(withheld(format!("reading it failed: {e}"))),
            Err(_) => return Err(withheld("it did not end in time".into())),
        };
        self.filter_tools_sync(mcp, auth, admitted, head, &bytes, event_stream)
    }

    fn filter_tools_sync(
        &self,
        mcp: &crate::mcp::McpClassifier,
        auth: &Authed,
        admitted: &Admitted,
        head: &mut http::response::Parts,
        bytes: &[u8],
        event_stream: bool,
    ) -> Result<ResBody, Refusal> {
        let up = &auth.rt.cfg;
        let withheld = |why: String| {
            Refusal::new(RefusalCode::UnfilterableResponse, format!("the tools/list answer cannot be filtered to the task's tools, so it is withheld: {why}"))
        };
        let may_call = |tool: &str| {
            let (capability, tier) = mcp.tool_class(tool);
            let d = self.policy.decide(&airlock_policy::Request {
                agent: admitted.task.agent.as_str(),
                task_id: &admitted.task.task_id,
                task_environment: &admitted.task.environment,
                grants: &admitted.task.grants,
                purpose: admitted.task.purpose.as_deref(),
                expires_at: admitted.task.expires_at,
                upstream: up.name.as_str(),
                upstream_environment: &up.environment,
                operation: tool,
                capability: &capability,
                resource_id: None,
                resource_environment: &up.environment,
                resource_tier: tier,
                approved: false,
                now: unix_now(),
                arguments: None,
            });
            !matches!(d, Decision::Deny { .. })
        };
        let out = crate::mcp::filter_tools_list(bytes, event_stream, &may_call).map_err(|e| withheld(e.0))?;
        head.headers.remove(header::TRANSFER_ENCODING);
        head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        Ok(Full::new(Bytes::from(out)).map_err(|e| match e {}).boxed_unsync())
    }

    /// The injection material for `rt`'s current secret (rebuilt when the cache hands out a new value).
    async fn prepare(&self, rt: &UpstreamRuntime) -> Result<Arc<Prepared>, Refusal> {
        let up = &rt.cfg;
        let secret = self
            .secrets
            .get(&up.secret, &up.environment)
            .await
            .map_err(|e| Refusal::new(RefusalCode::SecretUnavailable, format!("the credential for upstream {} is unavailable: {}", up.name, e.message)))?;
        if let Some(p) = rt.prepared.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
            && Arc::ptr_eq(&p.secret, &secret)
        {
            return Ok(p.clone());
        }
        secret_fits(&secret, up).map_err(|why| Refusal::new(RefusalCode::SecretMismatch, why))?;
        let p = Arc::new(prepare_injection(up, secret)?);
        *rt.prepared.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        Ok(p)
    }

    fn refuse(&self, request_id: &str, parts: &request::Parts, r: Refusal) -> Response<ResBody> {
        let actor = r.task.as_ref().map(|t| format!("agent:{}", t.agent)).unwrap_or_else(|| "unauthenticated".into());
        self.audit.record_later(AuditEvent {
            id: request_id.to_owned(),
            ts_ms: unix_ms(),
            actor,
            action: "gateway.request".into(),
            subject: format!("{}/{}", r.upstream.as_deref().unwrap_or("-"), r.operation.as_deref().unwrap_or("-")),
            outcome: "denied".into(),
            task_id: r.task.as_ref().map(|t| t.task_id.clone()),
            detail: json!({
                "code": r.code,
                "reason": r.message,
                "policies": r.policies,
                "method": parts.method.as_str(),
                "path": truncate(parts.uri.path(), 512),
                "approval_id": r.approval_id,
            }),
        });
        answer(request_id, &r)
    }

    fn request_event(&self, request_id: &str, parts: &request::Parts, a: &Admitted) -> AuditEvent {
        let env = self.upstreams.get(&a.upstream).map(|u| u.cfg.environment.to_string());
        AuditEvent {
            id: request_id.to_owned(),
            ts_ms: unix_ms(),
            actor: format!("agent:{}", a.task.agent),
            action: "gateway.request".into(),
            subject: format!("{}/{}", a.upstream, a.operation.name),
            outcome: "allowed".into(),
            task_id: Some(a.task.task_id.clone()),
            detail: json!({
                "method": parts.method.as_str(),
                "path": truncate(&a.rest, 512),
                "upstream": a.upstream,
                "environment": env,
                "operation": a.operation.name,
                "capability": a.operation.capability.as_str(),
                "tier": a.operation.tier.as_str(),
                "resource": a.operation.resource_id,
                "resource_environment": a.attribution.environment.as_str(),
                "resource_tier": a.attribution.tier.as_str(),
                "attribution": a.attribution.source,
                "operations": a.operations.iter().map(|o| json!({ "name": o.name, "capability": o.capability.as_str(), "resource": o.resource_id })).collect::<Vec<_>>(),
                "policies": a.policies,
                "approval_id": a.approval_id,
            }),
        }
    }

    fn outcome_event(&self, request_id: &str, a: &Admitted) -> AuditEvent {
        AuditEvent {
            id: crate::audit::new_id(),
            ts_ms: 0,
            actor: format!("agent:{}", a.task.agent),
            action: "gateway.response".into(),
            subject: format!("{}/{}", a.upstream, a.operation.name),
            outcome: String::new(),
            task_id: Some(a.task.task_id.clone()),
            detail: json!({ "request_id": request_id }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn outcome(&self, request_id: &str, a: &Admitted, status: u16, bytes: u64, started: Instant, outcome: &str, masked: usize) {
        let mut ev = self.outcome_event(request_id, a);
        finish_outcome(&mut ev, status, bytes, started, outcome, masked);
        self.audit.record_later(ev);
    }
}

/// Whether `secret` may be used for upstream `up`: same environment, and the same upstream
/// when the vault records one.
fn secret_fits(secret: &Secret, up: &Upstream) -> Result<(), String> {
    if secret.environment != up.environment {
        return Err(format!(
            "secret {:?} belongs to environment {:?} but the upstream serves {:?}; a credential is only used in its own environment",
            up.secret,
            secret.environment.as_str(),
            up.environment.as_str()
        ));
    }
    if let Some(bound) = secret.upstream.as_deref().filter(|b| !b.is_empty())
        && bound != up.name.as_str()
    {
        return Err(format!("secret {:?} is bound to upstream {bound:?}, not {:?}", up.secret, up.name.as_str()));
    }
    Ok(())
}

/// Derive the header or query value to inject and the needles to redact from `secret`.
fn prepare_injection(up: &Upstream, secret: Arc<Secret>) -> Result<Prepared, Refusal> {
    let raw = secret.expose();
    let injected = inject(&up.injection, raw).map_err(|()| {
        Refusal::new(
            RefusalCode::SecretUnusable,
            format!("the credential for upstream {} contains bytes that cannot be sent in a header; fix the vault value", up.name),
        )
    })?;
    // Every form an echo can take (raw, base64 at any alignment, hex, percent, JSON), and
    // the exact encoded form that was sent (Basic credentials, a query value).
    let mut needles = crate::redact::echo_forms(raw);
    needles.extend(injected.encoded);
    Ok(Prepared { needles: Needles::new(needles), secret, header: injected.header, query: injected.query })
}

/// Build the request the upstream receives. Nothing the agent sent chooses its host.
fn build_upstream_request<B>(
    up: &Upstream,
    parts: &request::Parts,
    rest: &str,
    prepared: &Prepared,
    request_id: &str,
    body: B,
) -> Result<Request<ReqBody>, Refusal>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // Path: the upstream's base path + the checked rest; query without the agent's copy of the param.
    let mut target = String::with_capacity(up.base_path.len() + rest.len() + 64);
    target.push_str(&up.base_path);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    let injected_param = match &up.injection {
        Injection::Query { param } => Some(param.as_str()),
        _ => None,
    };
    let mut query: Vec<&str> =
        parts.uri.query().unwrap_or("").split('&').filter(|kv| !kv.is_empty()).filter(|kv| injected_param.is_none_or(|p| query_name(kv) != p)).collect();
    if let Some(q) = &prepared.query {
        query.push(q);
    }
    let mut target = Zeroizing::new(target);
    if !query.is_empty() {
        target.push('?');
        target.push_str(&query.join("&"));
    }
    let uri = http::Uri::builder()
        .scheme(up.scheme.clone())
        .authority(up.authority.clone())
        .path_and_query(target.as_str())
        .build()
        .map_err(|_| Refusal::new(RefusalCode::BadRequest, "the request path or query cannot be forwarded"))?;

    let mut headers = forwarded_headers(&parts.headers, &up.injection);
    // A task token anywhere in what would be forwarded (another header, a cookie, the query,
    // percent-encoded or not) is refused: it is accepted only where the gateway takes it
    // from, and never reaches an upstream.
    if let Some(place) = query
        .iter()
        .find(|kv| carries_task_token(kv))
        .map(|_| "the query".to_owned())
        .or_else(|| headers.iter().find(|(_, v)| carries_task_token(&String::from_utf8_lossy(v.as_bytes()))).map(|(n, _)| format!("the {n} header")))
    {
        return Err(Refusal::new(
            RefusalCode::TokenMisplaced,
            format!("a task token appears in {place}; send it only in X-Airlock-Token or in the upstream's credential header, where the gateway replaces it"),
        ));
    }
    if let Some((name, value)) = &prepared.header {
        headers.insert(name.clone(), value.clone());
    }
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    // Lets the upstream's logs be matched with airlock's audit record.
    headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(request_id).expect("uuid is a header value"));

    let body = Limited::new(body, usize::try_from(up.max_body).unwrap_or(usize::MAX)).boxed_unsync();
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Ok(req)
}

/// The agent's headers minus everything that must not reach the upstream: hop-by-hop
/// headers and those named in `Connection`, `Host`, `Forwarded`/`X-Forwarded-*`/`X-Real-IP`,
/// every `X-Airlock-*`, the agent's own `Authorization`/`Proxy-Authorization`, the header
/// the credential is injected into, `Expect` and `Accept-Encoding` (replaced).
fn forwarded_headers(src: &HeaderMap, injection: &Injection) -> HeaderMap {
    let named_by_connection: Vec<String> = src
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let injected = match injection {
        Injection::Header { name, .. } => Some(name),
        _ => None,
    };
    let mut out = HeaderMap::with_capacity(src.len());
    for (name, value) in src {
        let n = name.as_str();
        let drop = is_hop_by_hop(name)
            || named_by_connection.iter().any(|c| c == n)
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name == header::PROXY_AUTHORIZATION
            || name == header::EXPECT
            || name == header::ACCEPT_ENCODING
            || n == "forwarded"
            || n == "x-real-ip"
            || n.starts_with("x-forwarded-")
            || n.starts_with("x-airlock-")
            || injected == Some(name);
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Remove hop-by-hop headers (and those named in `Connection`) from a response.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer", "upgrade"] {
        headers.remove(n);
    }
}

/// What an approval record names as its operation: the one operation, or every operation
/// of a batch in order (`volumeDelete + backupDelete`), cut after about 480 characters with
/// how many more there are.
fn operations_shown(ops: &[crate::classify::Operation]) -> String {
    let mut s = String::new();
    for (i, o) in ops.iter().enumerate() {
        if i > 0 && s.len() + 3 + o.name.len() > 480 {
            s.push_str(&format!(" + {} more", ops.len() - i));
            break;
        }
        if i > 0 {
            s.push_str(" + ");
        }
        s.push_str(&o.name);
    }
    s
}

/// The resources of a batch's operations, in order (`vol-prod-db, bkp-prod-db-1`); `None`
/// when none names one.
fn resources_shown(ops: &[crate::classify::Operation]) -> Option<String> {
    let ids: Vec<&str> = ops.iter().filter_map(|o| o.resource_id.as_deref()).collect();
    (!ids.is_empty()).then(|| {
        let mut s = ids.join(", ");
        s.truncate(s.char_indices().nth(480).map_or(s.len(), |(i, _)| i));
        s
    })
}

/// Whether `s`, or its percent-decoding, holds something shaped like a task token: `alk_`
/// at the start of a word followed by at least 32 token characters.
fn carries_task_token(s: &str) -> bool {
    // Case-insensitive and without allocating: this runs on every forwarded header.
    fn scan(b: &[u8]) -> bool {
        (0..b.len().saturating_sub(3)).any(|i| {
            b[i..i + 4].eq_ignore_ascii_case(b"alk_")
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
                && b[i + 4..].iter().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=')).count() >= 32
        })
    }
    scan(s.as_bytes()) || (s.contains('%') && scan(&percent_decode_str(s).collect::<Vec<u8>>()))
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The per-request context the phases fill in and [`Gateway::finish`] reads: how far the
/// request got.
struct RequestCx {
    /// The request id (also its decision record's id).
    id: String,
    started: Instant,
    /// The verified task and the upstream, once authenticated.
    auth: Option<(Arc<TaskIdentity>, String)>,
    /// The admitted request, once policy (or an approval) admitted it.
    admitted: Option<Admitted>,
    /// Whether its decision record is durable (then a refusal is its outcome).
    recorded: bool,
    /// Redactions so far (for an outcome written by `finish`).
    masked: usize,
}

/// One request, one meaning, and the declared body length within the upstream's cap.
fn check_one_meaning(up: &Upstream, parts: &request::Parts) -> Result<(), Refusal> {
    if let Err(a) = up.classifier.one_meaning(&parts.method, &parts.headers, parts.uri.query()) {
        let code = if matches!(a, crate::classify::Ambiguity::Method { .. }) { RefusalCode::MethodNotAllowed } else { RefusalCode::AmbiguousRequest };
        return Err(Refusal::new(code, a.to_string()));
    }
    if let Some(len) = content_length(&parts.headers)
        && len > up.max_body
    {
        return Err(Refusal::new(RefusalCode::BodyTooLarge, format!("request body of {len} bytes exceeds this upstream's limit of {} bytes", up.max_body)));
    }
    Ok(())
}

/// Step 12: strip hop-by-hop headers, mask echoes of the secret in headers, wrap the body
/// in the streaming redactor, and refuse what cannot be inspected: a transfer-coding other
/// than chunked (the body would reach the agent still encoded, its TE header gone with the
/// hop-by-hop ones) or a content-coding other than identity. A non-canonical reason phrase
/// is dropped: the status line is not redacted.
fn redact_response(
    masked_so_far: &mut usize,
    parts: &request::Parts,
    prepared: &Prepared,
    response: Response<hyper::body::Incoming>,
) -> Result<(http::response::Parts, ResBody, Arc<AtomicUsize>), Refusal> {
    let (mut head, incoming) = response.into_parts();
    head.extensions.remove::<hyper::ext::ReasonPhrase>();
    let other_coding = head
        .headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|v| v.to_str().map_or(true, |s| s.split(',').map(str::trim).any(|c| !c.is_empty() && !c.eq_ignore_ascii_case("chunked"))));
    if other_coding {
        return Err(Refusal::new(
            RefusalCode::UpstreamEncodedResponse,
            "the upstream sent a transfer-coding other than chunked; the body cannot be checked for secret echoes, so it is withheld",
        ));
    }
    strip_hop_by_hop(&mut head.headers);
    if let Some(n) = &prepared.needles {
        *masked_so_far = n.redact_headers(&mut head.headers);
    }
    if let Some(enc) = head.headers.get(header::CONTENT_ENCODING) {
        let may_have_body = parts.method != Method::HEAD && head.status != StatusCode::NO_CONTENT && head.status != StatusCode::NOT_MODIFIED;
        if may_have_body && !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(Refusal::new(
                RefusalCode::UpstreamEncodedResponse,
                "the upstream sent a compressed response although airlock asked for identity encoding; it cannot be checked for secret echoes, so it is withheld",
            ));
        }
    }
    let masked = Arc::new(AtomicUsize::new(*masked_so_far));
    let body: ResBody = match &prepared.needles {
        Some(n) => RedactBody::new(incoming, n.clone(), masked.clone()).map_err(Into::into).boxed_unsync(),
        None => incoming.map_err(Into::into).boxed_unsync(),
    };
    Ok((head, body, masked))
}

fn with_context(mut r: Refusal, a: &Admitted) -> Refusal {
    r.task = Some(a.task.clone());
    r.upstream = Some(a.upstream.clone());
    r.operation = Some(a.operation.name.clone());
    r
}

/// Why [`read_capped`] stopped.
enum Capped {
    TooBig,
    Failed(String),
}

/// Read a whole body of at most `limit` bytes.
async fn read_capped<B>(mut body: B, limit: usize) -> Result<Bytes, Capped>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Capped::Failed(e.to_string()))?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                return Err(Capped::TooBig);
            }
            buf.extend_from_slice(d);
        }
    }
    Ok(Bytes::from(buf))
}

/// Use an approval for this exact request, at most once. Retried briefly: SQLite answers
/// `database is locked` at once, without waiting, when the read-then-write transaction's
/// snapshot went stale because another writer (the audit group commit) committed in
/// between; the store's status guard makes a retry safe (the approval is used once or not
/// at all).
async fn consume_approval(store: &dyn Store, task_id: &str, hash: &str) -> Result<Option<ApprovalRecord>, airlock_store::Error> {
    let mut attempt = 0u32;
    loop {
        match store.consume_approval(task_id, hash, unix_now()).await {
            Err(e) if attempt < 4 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "consuming an approval failed; retrying");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
            }
            r => return r,
        }
    }
}

fn store_down(e: airlock_store::Error) -> Refusal {
    Refusal::new(RefusalCode::ApprovalStoreUnavailable, format!("the approval store failed, so the request is not forwarded: {e}"))
}

/// A refusal about approval `id` of the request `a`.
fn approval_refusal(a: &Admitted, id: &str, code: RefusalCode, message: String) -> Refusal {
    let mut r = with_context(Refusal::new(code, message), a);
    r.policies = a.policies.clone();
    r.approval_id = Some(id.to_owned());
    r
}

fn with_auth(mut r: Refusal, a: &Authed) -> Refusal {
    r.task = Some(a.task.clone());
    r.upstream = Some(a.rt.cfg.name.to_string());
    r
}

/// Whether the agent's request announces a body (a non-zero `Content-Length`, or a
/// `Transfer-Encoding`); a request that announces none has none (RFC 9112 §6.3).
fn may_have_body(parts: &request::Parts) -> bool {
    parts.headers.contains_key(header::TRANSFER_ENCODING) || content_length(&parts.headers).is_some_and(|l| l > 0)
}

fn full_body(b: Bytes) -> ReqBody {
    Full::new(b).map_err(|e| match e {}).boxed_unsync()
}

/// Map a client error to 502/504, masking any needle that might appear in its text.
fn upstream_failure(e: &hyper_util::client::legacy::Error, needles: Option<&Needles>) -> Refusal {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut timed_out = false;
    let mut detail = e.to_string();
    while let Some(s) = source {
        if s.is::<ConnectTimeout>() {
            timed_out = true;
        }
        detail = s.to_string();
        source = s.source();
    }
    let mut detail = detail.into_bytes();
    if let Some(n) = needles {
        n.mask(&mut detail);
    }
    let detail = String::from_utf8_lossy(&detail);
    if timed_out {
        Refusal::new(RefusalCode::UpstreamTimeout, "connecting to the upstream timed out")
    } else if e.is_connect() {
        Refusal::new(RefusalCode::UpstreamUnreachable, format!("cannot connect to the upstream: {detail}"))
    } else {
        Refusal::new(RefusalCode::UpstreamError, format!("the upstream request failed: {detail}"))
    }
}

/// The JSON answer for a refusal.
fn answer(request_id: &str, r: &Refusal) -> Response<ResBody> {
    let mut body = json!({
        "error": r.code,
        "message": r.message,
        "policies": r.policies,
        "request_id": request_id,
    });
    if let Some(id) = &r.approval_id {
        body["approval_id"] = json!(id);
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REQUEST_ID_HEADER, HeaderValue::from_str(request_id).expect("uuid is a header value"));
    resp
}

fn finish_outcome(ev: &mut AuditEvent, status: u16, bytes: u64, started: Instant, outcome: &str, masked: usize) {
    ev.ts_ms = unix_ms();
    ev.outcome = outcome.to_owned();
    if let Some(d) = ev.detail.as_object_mut() {
        d.insert("status".into(), status.into());
        d.insert("bytes".into(), bytes.into());
        // Whole microseconds: a float would not survive the audit chain's JSON round trip
        // bit for bit (serde_json's default float parsing may be off by one ULP), and
        // `airlock audit verify` would report the record as altered.
        d.insert("duration_us".into(), duration_us(started).into());
        d.insert("redactions".into(), masked.into());
    }
}

/// Microseconds since `started`, as an integer (audit records hold no floats).
pub(crate) fn duration_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Writes the outcome record when the response body ends or is dropped.
struct OutcomeGuard {
    audit: Arc<dyn AuditSink>,
    event: Option<AuditEvent>,
    status: u16,
    bytes: u64,
    started: Instant,
    masked: Arc<AtomicUsize>,
}

impl OutcomeGuard {
    fn finish(&mut self, outcome: &str) {
        if let Some(mut ev) = self.event.take() {
            finish_outcome(&mut ev, self.status, self.bytes, self.started, outcome, self.masked.load(Ordering::Relaxed));
            self.audit.record_later(ev);
        }
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            // Servers stop polling once a body of known length is complete, so "ended" is
            // decided here; otherwise the agent went away before the end.
            let outcome = if self.inner.is_end_stream() { "ok" } else { "incomplete" };
            g.finish(outcome);
        }
    }
}

/// Counts response bytes and completes the outcome record at the end of the body.
struct CountingBody {
    inner: ResBody,
    guard: Option<OutcomeGuard>,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_frame(cx));
        match &r {
            Some(Ok(f)) => {
                if let (Some(d), Some(g)) = (f.data_ref(), this.guard.as_mut()) {
                    g.bytes += d.len() as u64;
                }
            }
            Some(Err(_)) => {
                if let Some(mut g) = this.guard.take() {
                    g.finish("upstream_error");
                }
            }
            None => {
                if let Some(mut g) = this.guard.take() {
                    g.finish("ok");
                }
            }
        }
        std::task::Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_tokens_are_found_in_any_spelling_and_words_are_not() {
        let t = format!("alk_{}", "Ab3-_x".repeat(10));
        for hit in [
            t.clone(),
            format!("session={t}; other=1"),
            format!("Bearer {t}"),
            t.replace('_', "%5F"),
            t.to_uppercase(),
            format!("q={}", t.replace("alk_", "alk%5f")),
        ] {
            assert!(super::carries_task_token(&hit), "{hit}");
        }
        for miss in ["walk_the_dog_with_a_very_long_identifier_name_here_ok", "alk_short", "talk_abcdefghijklmnopqrstuvwxyz0123456789", ""] {
            assert!(!super::carries_task_token(miss), "{miss}");
        }
    }

    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn bearer() -> Injection {
        Injection::Header { name: header::AUTHORIZATION, prefix: "Bearer ".into(), suffix: String::new() }
    }

    #[test]
    fn inject_each_way_and_refuse_what_cannot_be_sent() {
        let h = inject(&bearer(), b"s3cr3t").unwrap();
        let (name, value) = h.header.unwrap();
        assert_eq!((name, value.as_bytes()), (header::AUTHORIZATION, &b"Bearer s3cr3t"[..]));
        assert!(value.is_sensitive() && h.query.is_none() && h.encoded.is_none());
        let b = inject(&Injection::Basic { username: "svc".into() }, b"s3cr3t").unwrap();
        assert_eq!(b.header.unwrap().1.as_bytes(), b"Basic c3ZjOnMzY3IzdA==");
        assert_eq!(b.encoded.as_deref().map(|e| &e[..]), Some(&b"c3ZjOnMzY3IzdA=="[..]));
        let q = inject(&Injection::Query { param: "api_key".into() }, b"a b&c").unwrap();
        assert_eq!(q.query.as_deref().map(String::as_str), Some("api_key=a%20b%26c"));
        assert_eq!(q.encoded.as_deref().map(|e| &e[..]), Some(&b"a%20b%26c"[..]));
        assert!(q.header.is_none());
        // A line break cannot go in a header; a query value must be UTF-8.
        assert!(inject(&bearer(), b"s3cr\r\nX-Evil: 1").is_err());
        assert!(inject(&Injection::Query { param: "k".into() }, b"\xff\xfe").is_err());
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            crate::token_place::find_token(&hm(&[("x-airlock-token", "t1"), ("authorization", "Bearer t2")]), None, &[&bearer()]).as_deref(),
            Some("t1")
        );
        assert_eq!(crate::token_place::find_token(&hm(&[("authorization", "bearer t2")]), None, &[&bearer()]).as_deref(), Some("t2"));
        let key = Injection::Header { name: HeaderName::from_static("x-api-key"), prefix: String::new(), suffix: String::new() };
        assert_eq!(crate::token_place::find_token(&hm(&[("x-api-key", "t3")]), None, &[&key]).as_deref(), Some("t3"));
        let q = Injection::Query { param: "key".into() };
        assert_eq!(crate::token_place::find_token(&HeaderMap::new(), Some("a=1&key=t%2B4"), &[&q]).as_deref(), Some("t+4"));
        let basic = Injection::Basic { username: "u".into() };
        let b = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "x:t5");
        assert_eq!(crate::token_place::find_token(&hm(&[("authorization", &format!("Basic {b}"))]), None, &[&basic]).as_deref(), Some("t5"));
        assert_eq!(crate::token_place::find_token(&HeaderMap::new(), None, &[&bearer()]), None);
    }

    #[test]
    fn forwarded_headers_drop_dangerous_ones() {
        let src = hm(&[
            ("host", "evil.example"),
            ("authorization", "Bearer task"),
            ("x-airlock-token", "task"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "host=evil"),
            ("connection", "keep-alive, x-custom, authorization"),
            ("x-custom", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("accept", "application/json"),
            ("content-type", "application/json"),
        ]);
        let out = forwarded_headers(&src, &bearer());
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["accept", "content-type"]);
    }
}
