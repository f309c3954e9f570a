//! The read-only inventory lookup: ask the upstream where a resource lives.
//!
//! This module owns `[upstream.inventory_lookup]` at run time: the request (a GraphQL query
//! with `$id`, or a REST `GET` path template), sent through the upstream's own pooled,
//! host-bound client with a *separate* read-only vault secret attached the way the
//! upstream's `inject` says; strict parsing of the answer (status 200, JSON without
//! duplicate keys, no GraphQL `errors`, a string at the environment pointer that is a known
//! environment, a valid tier); and a bounded cache with a TTL (shorter negative TTL for
//! "not found" and failures) and single flight per id, so concurrent misses for one id make
//! one request.
//!
//! Every lookup that reaches the network is audited (`gateway.inventory_lookup`) and
//! counted ([`LookupStats`]). It must never send the agent's token or anything else from
//! the agent's request except the resource id (percent-encoded in a path, or as the `$id`
//! variable), never log or audit the secret or the upstream's answer body, and never turn a
//! failure into an attribution: anything short of a clean answer leaves the id unattributed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_store::AuditEvent;
use airlock_types::{Environment, Tier};
use bytes::Bytes;
use http::header;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::Placement;
use crate::audit::AuditSink;
use crate::client::UpstreamClient;
use crate::config::Upstream;
use crate::inject::truncate;
use crate::operation::parse_json_strict;
use crate::ports::{Secret, SecretCache};

/// Most bytes of a lookup answer read.
const MAX_ANSWER: usize = 64 << 10;
/// Longest resource id looked up (longer ids stay unattributed).
pub const MAX_ID_LEN: usize = 256;
/// Most distinct ids one request looks up (the rest stay unattributed).
pub const MAX_IDS_PER_REQUEST: usize = 16;
/// A cached answer this close to expiry is fetched again before attribution, so it cannot
/// expire between the lookup and the decision (capped at half the TTL).
const REFRESH_MARGIN: Duration = Duration::from_secs(1);

/// Path-segment / query-value encoding for ids and query-injected secrets: everything but
/// unreserved characters.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub use crate::inventory::spec::{LookupRequest, LookupSpec, TierSource};

/// Lookup counters.
#[derive(Debug, Default)]
pub struct LookupStats {
    /// Lookups sent to the upstream (each one audited).
    pub requests: AtomicU64,
    /// Ids answered from the cache (including waits on another caller's lookup).
    pub cache_hits: AtomicU64,
    /// Lookups that placed the resource.
    pub attributed: AtomicU64,
    /// Lookups where the upstream does not know the id.
    pub not_found: AtomicU64,
    /// Lookups that failed (error, timeout, bad answer, unknown environment).
    pub failed: AtomicU64,
}

/// What the gateway lends a lookup for one request.
pub struct LookupContext<'a> {
    /// The upstream the request goes to.
    pub upstream: &'a Upstream,
    /// Its pooled, host-bound client.
    pub client: &'a UpstreamClient,
    /// The gateway's secret cache (the lookup secret is fetched through it).
    pub secrets: &'a SecretCache,
    /// Where lookup records go.
    pub audit: &'a dyn AuditSink,
    /// The agent request that needed the lookup (for the audit record).
    pub request_id: &'a str,
    /// Its task.
    pub task_id: &'a str,
}

/// One cached answer: a placement, or `None` (not found / failed).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) placement: Option<Placement>,
    pub(crate) expires: Instant,
}

type Cell = Arc<OnceCell<Entry>>;

/// A bounded TTL cache with single flight per key.
#[derive(Debug)]
pub(crate) struct Cache {
    slots: Mutex<HashMap<String, Cell>>,
    max: usize,
}

impl Cache {
    pub(crate) fn new(max: usize) -> Self {
        Self { slots: Mutex::new(HashMap::new()), max: max.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cell>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached answer for `id` if it is still fresh (`Some(None)`: fresh negative).
    pub(crate) fn fresh(&self, id: &str) -> Option<Option<Placement>> {
        let now = Instant::now();
        self.lock().get(id).and_then(|c| c.get()).filter(|e| e.expires > now).map(|e| e.placement.clone())
    }

    /// The answer for `id`: cached if it stays fresh for at least `margin`, else from
    /// `fetch` — run once however many callers miss at the same time (the others wait for
    /// it; if the one fetching is cancelled, a waiter takes over). Returns the entry and
    /// whether this caller ran `fetch`.
    pub(crate) async fn get_or_fetch<F, Fut>(&self, id: &str, margin: Duration, fetch: F) -> (Entry, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Entry>,
    {
        let cell = {
            let mut slots = self.lock();
            let now = Instant::now();
            match slots.get(id) {
                Some(c) if c.get().is_none_or(|e| e.expires > now + margin) => c.clone(),
                _ => {
                    if !slots.contains_key(id) && slots.len() >= self.max {
                        evict(&mut slots, self.max, now);
                    }
                    let c: Cell = Arc::default();
                    slots.insert(id.to_owned(), c.clone());
                    c
                }
            }
        };
        let mut ran = false;
        let entry = cell
            .get_or_init(|| {
                ran = true;
                fetch()
            })
            .await
            .clone();
        (entry, ran)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Make room for one entry: drop expired answers, then the ones expiring soonest.
/// Lookups in flight are kept (their waiters hold them anyway).
fn evict(slots: &mut HashMap<String, Cell>, max: usize, now: Instant) {
    slots.retain(|_, c| c.get().is_none_or(|e| e.expires > now));
    if slots.len() < max {
        return;
    }
    let mut ready: Vec<(Instant, String)> = slots.iter().filter_map(|(k, c)| c.get().map(|e| (e.expires, k.clone()))).collect();
    ready.sort();
    let excess = slots.len() + 1 - max;
    for (_, k) in ready.into_iter().take(excess.max(max / 10).max(1)) {
        slots.remove(&k);
    }
}

/// One upstream's lookup: its configuration, cache and counters.
#[derive(Debug)]
pub struct Lookup {
    pub(crate) spec: LookupSpec,
    pub(crate) cache: Cache,
    stats: LookupStats,
}

/// Why a lookup gave no placement (audited; never contains the secret or the answer body).
#[derive(Debug)]
struct Failure {
    reason: String,
    status: Option<u16>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), status: None }
    }
}

impl Lookup {
    /// A lookup with an empty cache.
    pub fn new(spec: LookupSpec) -> Self {
        let cache = Cache::new(spec.max_entries);
        Self { spec, cache, stats: LookupStats::default() }
    }

    /// The configuration.
    pub fn spec(&self) -> &LookupSpec {
        &self.spec
    }

    /// The counters.
    pub fn stats(&self) -> &LookupStats {
        &self.stats
    }

    /// The cached placement of `id`, if a fresh answer placed it.
    pub fn cached(&self, id: &str) -> Option<Placement> {
        self.cache.fresh(id).flatten()
    }

    /// Make sure `id` has a fresh cache entry (looking it up if needed).
    pub(crate) async fn ensure(&self, cx: &LookupContext<'_>, id: &str) {
        let margin = REFRESH_MARGIN.min(self.spec.ttl / 2).min(self.spec.negative_ttl / 2);
        let (_, ran) = self.cache.get_or_fetch(id, margin, || self.fetch_entry(cx, id)).await;
        if !ran {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Look `id` up on the upstream, audit it, and turn the outcome into a cache entry.
    async fn fetch_entry(&self, cx: &LookupContext<'_>, id: &str) -> Entry {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(self.spec.timeout, self.fetch(cx, id)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(format!("no answer within {:?}", self.spec.timeout))),
        };
        let (outcome, placement, detail) = match &result {
            Ok(Some(p)) => {
                self.stats.attributed.fetch_add(1, Ordering::Relaxed);
                ("attributed", Some(p.clone()), json!({ "environment": p.environment.as_str(), "tier": p.tier.as_str() }))
            }
            Ok(None) => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                ("not_found", None, json!({}))
            }
            Err(f) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(upstream = %self.spec.upstream, reason = %f.reason, "inventory lookup failed; the resource stays unattributed");
                ("failed", None, json!({ "reason": f.reason, "status": f.status }))
            }
        };
        let ttl = if placement.is_some() { self.spec.ttl } else { self.spec.negative_ttl };
        let mut detail = detail;
        detail["request_id"] = json!(cx.request_id);
        detail["upstream"] = json!(self.spec.upstream.as_str());
        detail["resource"] = json!(id);
        detail["duration_us"] = json!(started.elapsed().as_micros() as u64);
        detail["cached_for_ms"] = json!(ttl.as_millis() as u64);
        cx.audit.record_later(AuditEvent {
            id: crate::audit::new_id(),
            ts_ms: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
            actor: "gateway".into(),
            action: "gateway.inventory_lookup".into(),
            subject: format!("{}/{id}", self.spec.upstream),
            outcome: outcome.into(),
            task_id: Some(cx.task_id.to_owned()),
            detail,
        });
        Entry { placement, expires: Instant::now() + ttl }
    }

    async fn fetch(&self, cx: &LookupContext<'_>, id: &str) -> Result<Option<Placement>, Failure> {
        let up = cx.upstream;
        let secret = cx
            .secrets
            .get(&self.spec.secret, &self.spec.environment)
            .await
            .map_err(|e| Failure::new(format!("lookup secret {:?}: {}", self.spec.secret, e.message)))?;
        secret_fits(&secret, &self.spec).map_err(Failure::new)?;
        let req = build_request(&self.spec, up, &secret, id).map_err(Failure::new)?;
        let resp = cx.client.client.request(req).await.map_err(|e| Failure::new(format!("request failed: {e}")))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let fail = |reason: String| Failure { reason, status: Some(status.as_u16()) };
        if status != StatusCode::OK {
            return Err(fail(format!("the upstream answered HTTP {}", status.as_u16())));
        }
        if let Some(enc) = resp.headers().get(header::CONTENT_ENCODING)
            && !enc.as_bytes().eq_ignore_ascii_case(b"identity")
        {
            return Err(fail("the answer is compressed although identity was asked for".into()));
        }
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| fail(format!("reading the answer failed (at most {MAX_ANSWER} bytes): {e}")))?
            .to_bytes();
        parse_answer(&self.spec, &body).map_err(fail)
    }
}

/// The lookup secret belongs to the upstream's environment and, if the vault binds it to
/// an upstream, to this one.
pub(crate) fn secret_fits(secret: &Secret, spec: &LookupSpec) -> Result<(), String> {
    if secret.environment != spec.environment {
        return Err(format!(
            "lookup secret {:?} belongs to environment {:?} but upstream {} serves {:?}; a credential is only used in its own environment",
            spec.secret,
            secret.environment.as_str(),
            spec.upstream,
            spec.environment.as_str()
        ));
    }
    if let Some(bound) = secret.upstream.as_deref().filter(|b| !b.is_empty())
        && bound != spec.upstream.as_str()
    {
        return Err(format!("lookup secret {:?} is bound to upstream {bound:?}, not {:?}", spec.secret, spec.upstream.as_str()));
    }
    Ok(())
}

/// The lookup request: fixed host (the upstream's), the read-only secret injected the
/// upstream's way, nothing from the agent but the id.
fn build_request(spec: &LookupSpec, up: &Upstream, secret: &Secret, id: &str) -> Result<Request<crate::client::ReqBody>, String> {
    let raw = secret.expose();
    let unusable = || format!("lookup secret {:?} cannot be sent the way upstream {} injects its credential; fix the vault value", spec.secret, up.name);
    let enc_id = utf8_percent_encode(id, ENCODE).to_string();
    let (method, mut target, body) = match &spec.request {
        LookupRequest::Graphql { path, query } => {
            let body = json!({ "query": query, "variables": { "id": id } }).to_string();
            (Method::POST, format!("{}{path}", up.base_path), Bytes::from(body))
        }
        LookupRequest::Get { template } => (Method::GET, format!("{}{}", up.base_path, template.replace("{id}", &enc_id)), Bytes::new()),
    };
    if target.is_empty() {
        target.push('/');
    }
    let injected = crate::inject::inject(&up.injection, raw).map_err(|()| unusable())?;
    let mut target = Zeroizing::new(target);
    if let Some(q) = &injected.query {
        let sep = if target.contains('?') { '&' } else { '?' };
        target.push(sep);
        target.push_str(q);
    }
    let uri: Uri = format!("{}://{}{}", up.scheme, up.authority, &*target)
        .parse()
        .map_err(|_| format!("the lookup URL for id {:?} is not a valid URI", truncate(id, 64)))?;
    let mut b = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::ACCEPT, "application/json")
        .header(header::ACCEPT_ENCODING, "identity")
        .header(header::USER_AGENT, "airlock-inventory-lookup");
    if method == Method::POST {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some((name, value)) = injected.header {
        b = b.header(name, value);
    }
    b.body(Full::new(body).map_err(|never| match never {}).boxed_unsync()).map_err(|e| format!("cannot build the lookup request: {e}"))
}

/// Read a placement out of a lookup answer. `Ok(None)`: the upstream does not know the id
/// (the environment pointer is missing or null). Anything unexpected is an error.
pub(crate) fn parse_answer(spec: &LookupSpec, body: &[u8]) -> Result<Option<Placement>, String> {
    let v = parse_json_strict(body).map_err(|e| format!("the answer is not JSON ({})", e.0))?;
    if matches!(spec.request, LookupRequest::Graphql { .. })
        && v.get("errors").is_some_and(|e| !matches!(e, Value::Null) && e.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err("the answer carries GraphQL errors".into());
    }
    let raw = match v.pointer(&spec.environment_pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(format!("the value at {} is not a string", spec.environment_pointer)),
    };
    let environment = match &spec.environments {
        Some(map) => {
            map.get(raw.as_str()).cloned().ok_or_else(|| format!("the environment at {} is not one of environments = {{ … }}", spec.environment_pointer))?
        }
        None => raw.parse::<Environment>().map_err(|_| format!("the value at {} is not an environment name", spec.environment_pointer))?,
    };
    let tier = match &spec.tier {
        TierSource::Fixed(t) => *t,
        TierSource::Pointer(p) => match v.pointer(p) {
            Some(Value::String(s)) => s.parse::<Tier>().map_err(|_| format!("the value at {p} is not a tier (primary, backup)"))?,
            _ => return Err(format!("no tier string at {p}")),
        },
    };
    Ok(Some(Placement { environment, tier }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_types::Name;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;

    fn spec(request: LookupRequest) -> LookupSpec {
        LookupSpec {
            upstream: Name::parse("upstream", "cloud").unwrap(),
            environment: "staging".parse().unwrap(),
            secret: "ro".into(),
            secret_line: 1,
            request,
            environment_pointer: "/data/volume/environment".into(),
            environments: None,
            tier: TierSource::Fixed(Tier::Primary),
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            max_entries: 100,
        }
    }

    fn gql() -> LookupSpec {
        spec(LookupRequest::Graphql { path: String::new(), query: "query($id: ID!) { volume(id: $id) { environment } }".into() })
    }

    fn placed(env: &str) -> Entry {
        Entry { placement: Some(Placement { environment: env.parse().unwrap(), tier: Tier::Primary }), expires: Instant::now() + Duration::from_secs(60) }
    }

    #[test]
    fn answers_are_parsed_strictly() {
        let s = gql();
        let p = parse_answer(&s, br#"{"data":{"volume":{"environment":"production"}}}"#).unwrap().unwrap();
        assert_eq!((p.environment.as_str(), p.tier), ("production", Tier::Primary));
        assert_eq!(parse_answer(&s, br#"{"data":{"volume":null}}"#).unwrap(), None);
        for bad in [
            &br#"{"data":{"volume":null},"errors":[{"message":"volume x not found"}]}"#[..],
            br#"{"data":{"volume":{"environment":"Production"}}}"#,
            br#"{"data":{"volume":{"environment":7}}}"#,
            br#"{"data":{"volume":{"environment":"staging","environment":"production"}}}"#,
            b"<html>oops</html>",
            b"",
        ] {
            assert!(parse_answer(&s, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A mapping makes every other name unknown.
        let mut m = gql();
        m.environments = Some(BTreeMap::from([("prod".to_owned(), "production".parse().unwrap())]));
        assert_eq!(parse_answer(&m, br#"{"data":{"volume":{"environment":"prod"}}}"#).unwrap().unwrap().environment.as_str(), "production");
        assert!(parse_answer(&m, br#"{"data":{"volume":{"environment":"staging"}}}"#).is_err());
        // Tier from the answer, strictly.
        let mut t = gql();
        t.tier = TierSource::Pointer("/data/volume/tier".into());
        assert_eq!(parse_answer(&t, br#"{"data":{"volume":{"environment":"staging","tier":"backup"}}}"#).unwrap().unwrap().tier, Tier::Backup);
        assert!(parse_answer(&t, br#"{"data":{"volume":{"environment":"staging"}}}"#).is_err());
        assert!(parse_answer(&t, br#"{"data":{"volume":{"environment":"staging","tier":"gold"}}}"#).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn cache_expires_after_its_ttl() {
        let cache = Cache::new(10);
        let fetches = AtomicUsize::new(0);
        let fetch = || async {
            fetches.fetch_add(1, Ordering::SeqCst);
            placed("staging")
        };
        assert!(cache.get_or_fetch("v", Duration::ZERO, fetch).await.1);
        assert_eq!(cache.fresh("v").unwrap().unwrap().environment.as_str(), "staging");
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!cache.get_or_fetch("v", Duration::ZERO, fetch).await.1, "fresh entries are not fetched again");
        // Within the margin of expiry, it is fetched again (before the decision can see it expire).
        tokio::time::advance(Duration::from_millis(29_500)).await;
        assert!(cache.get_or_fetch("v", Duration::from_secs(1), fetch).await.1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(cache.fresh("v"), None, "expired entries are not attributed");
        assert!(cache.get_or_fetch("v", Duration::ZERO, fetch).await.1);
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn negative_answers_are_cached_too() {
        let cache = Cache::new(10);
        let e = Entry { placement: None, expires: Instant::now() + Duration::from_secs(10) };
        assert!(cache.get_or_fetch("gone", Duration::ZERO, || async { e.clone() }).await.1);
        assert_eq!(cache.fresh("gone"), Some(None));
        assert!(!cache.get_or_fetch("gone", Duration::ZERO, || async { e.clone() }).await.1, "a fresh negative answer is not fetched again");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.fresh("gone"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_id_fetch_once() {
        let cache = Arc::new(Cache::new(10));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("vol", Duration::ZERO, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        placed("production")
                    })
                    .await
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().placement.unwrap().environment.as_str(), "production");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Different ids do not wait for each other.
        let (a, b) = tokio::join!(
            cache.get_or_fetch("a", Duration::ZERO, || async { placed("staging") }),
            cache.get_or_fetch("b", Duration::ZERO, || async { placed("staging") })
        );
        assert!(a.1 && b.1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let cache = Cache::new(4);
        for i in 0..20 {
            cache.get_or_fetch(&format!("id-{i}"), Duration::ZERO, || async { placed("staging") }).await;
            assert!(cache.len() <= 4, "{} entries", cache.len());
        }
        assert!(cache.fresh("id-19").is_some(), "the newest entry is kept");
    }

    #[test]
    fn requests_carry_only_the_id_and_the_lookup_secret() {
        let cfg = crate::config::Config::parse(
            "[[upstream]]\nname = \"cloud\"\nbase_url = \"https://api.example.com/v2\"\nenvironment = \"staging\"\nsecret = \"rw\"\ninject = { query = \"key\" }\n",
            std::path::Path::new("airlock.toml"),
        )
        .unwrap();
        let up = &cfg.upstreams[0];
        let secret = Secret::new(b"ro/secret value".to_vec(), "staging".parse().unwrap(), Tier::Primary, None);
        let s = spec(LookupRequest::Get { template: "/volumes/{id}?fields=env".into() });
        let req = build_request(&s, up, &secret, "../admin?x=1#").unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().to_string(), "https://api.example.com/v2/volumes/..%2Fadmin%3Fx%3D1%23?fields=env&key=ro%2Fsecret%20value");
        let req = build_request(&gql(), up, &secret, "vol-1").unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), "/v2");
    }
}
