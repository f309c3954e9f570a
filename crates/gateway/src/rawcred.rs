//! Raw credentials on the way out: the detectors behind
//! [`RawCredentialCheck`].
//!
//! A request that carries a credential airlock did not issue means the agent found a
//! secret somewhere the preflight missed. Two layers look at the request headers (an
//! `Authorization: Basic` value also decoded), the request target and the buffered body
//! (GraphQL/MCP bodies up to the classification cap):
//!
//! - [`ScannerDetector`] (the gateway's default): the scanner crate's engine
//!   ([`airlock_scan::Scanner::builtin`], every built-in rule), keeping only findings of
//!   **high** confidence from non-generic rules — distinctive formats and checksum-valid
//!   tokens, so an ordinary body (a `"password"` field sent to an API that creates a
//!   database user, a random id) is not refused — plus
//! - [`BuiltinDetector`]: a small, strict format detector for the kinds the scanner rates
//!   lower or suppresses as documentation examples but which must never leave: GitHub token
//!   formats (`ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_` + 36, `github_pat_`), AWS access key ids
//!   (`AKIA`/`ASIA` + 16) and PEM private keys.
//!
//! Before scanning, airlock's own task tokens (`alk_…`) are blanked (they never match) and
//! the scanner's inline suppression marker (`airlock:allow`) is defused, so an agent cannot
//! silence a finding by adding it to its request. A [`Finding`] names the rule and the
//! place, never the value; the scanner's zeroizing secret is dropped at once.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use aho_corasick::AhoCorasick;
use airlock_scan::{Confidence, INLINE_ALLOW, RuleSet, Scanner};
use base64::Engine as _;
use http::HeaderMap;

/// Checks an outgoing request for credentials airlock did not issue (the agent found a
/// secret the preflight missed). The default, [`ScannerDetector`], is the
/// scanner's engine (high-confidence rules) plus strict built-in formats (GitHub tokens,
/// AWS access key ids, PEM private keys); another check can be plugged in with
/// [`crate::Gateway::with_credential_check`].
pub trait RawCredentialCheck: Send + Sync + 'static {
    /// The first credential in the request's headers, target (path and query) or buffered
    /// body (GraphQL/MCP bodies up to the classification cap; `None` for streamed bodies).
    /// Must ignore airlock's own task tokens (`alk_…`) and never return the value itself.
    fn check(&self, headers: &HeaderMap, target: &str, body: Option<&[u8]>) -> Option<Finding>;
}

/// A credential found in a request: what kind, and where (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Detector id: a scanner rule id (`github-pat-classic`, `slack-bot-token`, …) or a
    /// built-in kind (`github_token`, `aws_access_key_id`, `private_key`).
    pub kind: String,
    /// Where: `header:<name>`, `target` or `body`.
    pub location: String,
}

/// The path the scanner is told it is scanning (no rule's `paths` filter names it).
const PATH_HINT: &str = "airlock-gateway-request";

/// The default check: the scanner's high-confidence rules, then the built-in formats.
#[derive(Debug)]
pub struct ScannerDetector {
    scanner: Arc<Scanner>,
    /// Generic rules (assignment/context rules), whose findings never deny.
    generic: HashSet<String>,
    builtin: BuiltinDetector,
}

impl ScannerDetector {
    /// Over the scanner's built-in rules — only those that can deny: rules of high
    /// confidence, or with a checksum (a valid one makes a finding high), and not generic.
    /// Leaving the others out keeps their keywords (`bearer`, `curl`, an API's name in the
    /// `Host` header …) from sending every request through their regexes.
    pub fn builtin() -> Result<Self, String> {
        let load = |e: airlock_scan::Error| format!("the scanner's built-in rules do not load: {e}");
        let mut set = RuleSet::default();
        for (name, text) in airlock_scan::builtin_rule_files() {
            set.extend(RuleSet::parse(&format!("builtin:{name}"), text).map_err(load)?).map_err(load)?;
        }
        set.rules.retain(|r| (r.confidence == Confidence::High || r.checksum.is_some()) && !r.is_generic());
        let scanner = Scanner::from_rule_set(set).map_err(load)?;
        // Scanner patterns compile on first use; a gateway compiles them at start so no
        // agent request pays for it and a bad pattern stops the gateway, not a request.
        scanner.compile_all().map_err(load)?;
        Ok(Self::new(Arc::new(scanner)))
    }

    /// Over `scanner`'s rules (e.g. built-ins plus an organisation's rule files).
    pub fn new(scanner: Arc<Scanner>) -> Self {
        let generic = scanner.rules().iter().filter(|r| r.is_generic()).map(|r| r.id.clone()).collect();
        Self { scanner, generic, builtin: BuiltinDetector::new() }
    }

    /// One detector per process over the built-in rules (compiling ~270 regexes takes a
    /// moment; every [`crate::Gateway`] shares it).
    pub fn shared() -> Result<Arc<Self>, String> {
        static SHARED: OnceLock<Result<Arc<ScannerDetector>, String>> = OnceLock::new();
        SHARED.get_or_init(|| Self::builtin().map(Arc::new)).clone()
    }

    /// The first credential in `hay` (already sanitised): its kind and byte offset.
    fn find(&self, hay: &[u8]) -> Option<(String, usize)> {
        let scanned = self
            .scanner
            .scan_bytes(PATH_HINT, hay)
            .into_iter()
            .filter(|f| f.confidence == Confidence::High && !self.generic.contains(&f.rule))
            .min_by_key(|f| f.byte_range.start)
            .map(|f| (f.rule.clone(), f.byte_range.start));
        let builtin = self.builtin.find_at(hay).map(|(k, at)| (k.to_owned(), at));
        match (scanned, builtin) {
            (Some(s), Some(b)) => Some(if b.1 < s.1 { b } else { s }),
            (s, b) => s.or(b),
        }
    }
}

impl RawCredentialCheck for ScannerDetector {
    fn check(&self, headers: &HeaderMap, target: &str, body: Option<&[u8]>) -> Option<Finding> {
        // Headers and target in one buffer, one line each: one scan, mapped back by offset.
        let (buf, places) = head_buffer(headers, target);
        if let Some((kind, at)) = self.find(&buf) {
            let location = match places.iter().find(|(range, _)| range.contains(&at)).map(|(_, p)| *p) {
                Some(Some(i)) => headers.iter().nth(i).map(|(n, _)| format!("header:{n}")).unwrap_or_else(|| "header".into()),
                Some(None) => "target".into(),
                None => "header".into(),
            };
            return Some(Finding { kind, location });
        }
        let body = body?;
        std::iter::once(sanitise(body))
            .chain(decoded_views(body).iter().map(|v| sanitise(v)))
            .find_map(|b| self.find(&b))
            .map(|(kind, _)| Finding { kind, location: "body".into() })
    }
}

/// What the upstream would decode `bytes` to, when it holds an encoding: URL
/// percent-decoding (query strings, form bodies, `+` as space) and JSON string escapes
/// (`\uXXXX`, `\/`…). A credential spelled `ghp%5F…` or `\u0067hp_…` is the same
/// credential to the upstream, so it is checked in that form too. Empty when there is
/// nothing to decode (the common case costs one `memchr` per encoding).
pub(crate) fn decoded_views(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if memchr::memchr(b'%', bytes).is_some() {
        let plus: Vec<u8> = bytes.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
        out.push(percent_encoding::percent_decode(bytes).collect());
        out.push(percent_encoding::percent_decode(&plus).collect());
    }
    if memchr::memchr(b'\\', bytes).is_some() {
        out.push(json_unescape(bytes));
    }
    out
}

/// JSON string escapes resolved wherever they appear (surrogate pairs joined; an invalid
/// escape is kept as written).
fn json_unescape(bytes: &[u8]) -> Vec<u8> {
    let hex4 = |s: &[u8]| -> Option<u32> { std::str::from_utf8(s.get(..4)?).ok().and_then(|h| u32::from_str_radix(h, 16).ok()) };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let simple = match bytes[i + 1] {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i += 2;
            continue;
        }
        if bytes[i + 1] == b'u'
            && let Some(mut cp) = hex4(&bytes[i + 2..])
        {
            let mut used = 6;
            if (0xD800..0xDC00).contains(&cp)
                && bytes.get(i + 6..i + 8) == Some(b"\\u")
                && let Some(lo) = hex4(&bytes[i + 8..]).filter(|lo| (0xDC00..0xE000).contains(lo))
            {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                used = 12;
            }
            if let Some(c) = char::from_u32(cp) {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
                i += used;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Where a line of the head buffer came from: the index of a header (in `HeaderMap`
/// iteration order, one per value), or `None` for the target.
type Place = Option<usize>;

/// Header values (and decoded basic credentials) and the target, one per line, sanitised,
/// with the place each byte range stands for.
fn head_buffer(headers: &HeaderMap, target: &str) -> (Vec<u8>, Vec<(std::ops::Range<usize>, Place)>) {
    let mut buf = Vec::with_capacity(1024);
    let mut places = Vec::with_capacity(headers.len() + 1);
    let mut push = |buf: &mut Vec<u8>, bytes: &[u8], place: Place| {
        let start = buf.len();
        buf.extend_from_slice(&sanitise(bytes));
        places.push((start..buf.len() + 1, place));
        buf.push(b'\n');
    };
    for (i, value) in headers.values().enumerate() {
        let v = value.as_bytes();
        push(&mut buf, v, Some(i));
        if let Some(decoded) = basic_credentials(v) {
            push(&mut buf, &decoded, Some(i));
        }
        for d in decoded_views(v) {
            push(&mut buf, &d, Some(i));
        }
    }
    push(&mut buf, target.as_bytes(), None);
    for d in decoded_views(target.as_bytes()) {
        push(&mut buf, &d, None);
    }
    (buf, places)
}

/// `Basic <base64>` decoded, if it is one.
fn basic_credentials(v: &[u8]) -> Option<Vec<u8>> {
    let rest = v.get(..6).filter(|p| p.eq_ignore_ascii_case(b"basic ")).map(|_| &v[6..])?;
    base64::engine::general_purpose::STANDARD.decode(rest.trim_ascii()).ok()
}

/// Blank airlock task tokens and defuse the scanner's inline-allow marker. Borrows when
/// there is nothing to change (the common case costs two substring searches).
pub fn sanitise(hay: &[u8]) -> Cow<'_, [u8]> {
    let prefix = airlock_token::TOKEN_PREFIX.as_bytes();
    let has_token = memchr_find(hay, prefix).is_some();
    let has_allow = memchr_find(hay, INLINE_ALLOW.as_bytes()).is_some();
    if !has_token && !has_allow {
        return Cow::Borrowed(hay);
    }
    let mut out = hay.to_vec();
    let mut i = 0;
    while let Some(p) = memchr_find(&out[i..], prefix) {
        let start = i + p;
        let mut end = start + prefix.len();
        while end < out.len() && is_token_byte(out[end]) {
            end += 1;
        }
        // Only a token that starts a word (not `xalk_…`).
        if start == 0 || !is_word(out[start - 1]) {
            out[start..end].fill(b' ');
        }
        i = end;
    }
    let marker = INLINE_ALLOW.as_bytes();
    while let Some(p) = memchr_find(&out, marker) {
        // `airlock:allow` → `airlock allow`: no longer the marker, nothing else changes.
        out[p + 7] = b' ';
    }
    Cow::Owned(out)
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'='
}

/// The built-in format detector.
#[derive(Debug)]
pub struct BuiltinDetector {
    prefixes: AhoCorasick,
}

/// (prefix, kind, minimum tail length, tail alphabet).
const PATTERNS: &[(&str, &str, usize, Tail)] = &[
    ("ghp_", "github_token", 36, Tail::Alnum),
    ("gho_", "github_token", 36, Tail::Alnum),
    ("ghs_", "github_token", 36, Tail::Alnum),
    ("ghu_", "github_token", 36, Tail::Alnum),
    ("ghr_", "github_token", 36, Tail::Alnum),
    ("github_pat_", "github_token", 22, Tail::AlnumUnderscore),
    ("AKIA", "aws_access_key_id", 16, Tail::UpperDigit),
    ("ASIA", "aws_access_key_id", 16, Tail::UpperDigit),
    ("-----BEGIN ", "private_key", 0, Tail::PemPrivateKey),
];

#[derive(Debug, Clone, Copy)]
enum Tail {
    Alnum,
    AlnumUnderscore,
    UpperDigit,
    PemPrivateKey,
}

impl Default for BuiltinDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BuiltinDetector {
    /// Build the detector.
    pub fn new() -> Self {
        let prefixes = AhoCorasick::new(PATTERNS.iter().map(|p| p.0)).expect("static patterns build");
        Self { prefixes }
    }

    /// The first credential in `hay`, if any.
    pub fn find_in(&self, hay: &[u8]) -> Option<&'static str> {
        self.find_at(hay).map(|(k, _)| k)
    }

    /// The first credential in `hay` and where it starts.
    pub fn find_at(&self, hay: &[u8]) -> Option<(&'static str, usize)> {
        for m in self.prefixes.find_overlapping_iter(hay) {
            let (_, kind, min, tail) = PATTERNS[m.pattern().as_usize()];
            let start = m.start();
            // A match must start a token: not in the middle of a word, and never inside an
            // airlock task token (alk_ + base64url).
            if start > 0 && is_word(hay[start - 1]) {
                continue;
            }
            if inside_task_token(hay, start) {
                continue;
            }
            let rest = &hay[m.end()..];
            let ok = match tail {
                Tail::Alnum => run(rest, |b| b.is_ascii_alphanumeric()) == min,
                Tail::AlnumUnderscore => run(rest, |b| b.is_ascii_alphanumeric() || b == b'_') >= min,
                Tail::UpperDigit => {
                    run(rest, |b| b.is_ascii_uppercase() || b.is_ascii_digit()) == min && !rest.get(min).is_some_and(|b| b.is_ascii_alphanumeric())
                }
                Tail::PemPrivateKey => {
                    let line = &rest[..rest.len().min(64)];
                    let end = line.windows(5).position(|w| w == b"-----").unwrap_or(line.len());
                    line[..end].ends_with(b"PRIVATE KEY") && line[..end].iter().all(|b| b.is_ascii_uppercase() || *b == b' ')
                }
            };
            if ok {
                return Some((kind, start));
            }
        }
        None
    }
}

impl RawCredentialCheck for BuiltinDetector {
    fn check(&self, headers: &HeaderMap, target: &str, body: Option<&[u8]>) -> Option<Finding> {
        for (name, value) in headers {
            let found = self.find_in(value.as_bytes()).or_else(|| basic_credentials(value.as_bytes()).and_then(|d| self.find_in(&d)));
            if let Some(kind) = found {
                return Some(Finding { kind: kind.into(), location: format!("header:{name}") });
            }
        }
        if let Some(kind) = self.find_in(target.as_bytes()) {
            return Some(Finding { kind: kind.into(), location: "target".into() });
        }
        if let Some(kind) = body.and_then(|b| self.find_in(b)) {
            return Some(Finding { kind: kind.into(), location: "body".into() });
        }
        None
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn run(s: &[u8], f: impl Fn(u8) -> bool) -> usize {
    s.iter().take_while(|b| f(**b)).count()
}

/// Whether position `at` lies inside an `alk_…` token (base64url characters back to `alk_`).
fn inside_task_token(hay: &[u8], at: usize) -> bool {
    let mut i = at;
    while i > 0 && (hay[i - 1].is_ascii_alphanumeric() || hay[i - 1] == b'_' || hay[i - 1] == b'-' || hay[i - 1] == b'=') {
        i -= 1;
    }
    hay[i..].starts_with(airlock_token::TOKEN_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GH: &str = "ghp_0123456789abcdefghijABCDEFGHIJ012345";

    #[test]
    fn finds_the_built_in_kinds() {
        let d = BuiltinDetector::new();
        assert_eq!(d.find_in(format!("token {GH}").as_bytes()), Some("github_token"));
        assert_eq!(d.find_in(b"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"), Some("github_token"));
        assert_eq!(d.find_in(b"key=AKIAIOSFODNN7EXAMPLE&x"), Some("aws_access_key_id"));
        assert_eq!(d.find_in(b"ASIAIOSFODNN7EXAMPLE"), Some("aws_access_key_id"));
        assert_eq!(d.find_in(b"{\"k\":\"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\"}"), Some("private_key"));
        assert_eq!(d.find_in(b"-----BEGIN OPENSSH PRIVATE KEY-----"), Some("private_key"));
    }

    #[test]
    fn ignores_look_alikes_and_task_tokens() {
        let d = BuiltinDetector::new();
        for s in [
            "ghp_short",
            "xghp_0123456789abcdefghijABCDEFGHIJ012345",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLEX",
            "-----BEGIN CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----",
            "alk_EnQKCghAKIAIOSFODNN7EXAMPLE_ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "query { volumes { id } }",
        ] {
            assert_eq!(d.find_in(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn check_names_the_place_not_the_value() {
        let d = BuiltinDetector::new();
        let mut h = HeaderMap::new();
        h.insert("x-upstream-key", http::HeaderValue::from_str(GH).unwrap());
        let f = d.check(&h, "/stg/x", None).unwrap();
        assert_eq!(f, Finding { kind: "github_token".into(), location: "header:x-upstream-key".into() });
        assert!(!format!("{f:?}").contains("ghp_0"));
        assert_eq!(d.check(&HeaderMap::new(), "/stg/x?k=AKIAIOSFODNN7EXAMPLE", None).unwrap().location, "target");
        assert_eq!(d.check(&HeaderMap::new(), "/", Some(GH.as_bytes())).unwrap().location, "body");
    }

    /// A checksum-valid classic GitHub token (the scanner's own rule example).
    const GH_VALID: &str = "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";

    fn scanner() -> Arc<ScannerDetector> {
        ScannerDetector::shared().unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn scanner_finds_high_confidence_credentials_and_names_the_place() {
        let d = scanner();
        let h = headers(&[("accept", "application/json"), ("x-gh", &format!("token {GH_VALID}"))]);
        let f = d.check(&h, "/stg/x", None).unwrap();
        assert_eq!((f.kind.as_str(), f.location.as_str()), ("github-pat-classic", "header:x-gh"));
        assert!(!format!("{f:?}").contains(GH_VALID));
        // Rules the built-in layer does not know: Slack, Stripe, a checksum-valid npm token …
        let slack = "xoxb-466463632774-8497344952247-1OfCGrFAwhgU1wUKNcrjinfz";
        let f = d.check(&HeaderMap::new(), "/stg/x", Some(format!("{{\"hook\":\"{slack}\"}}").as_bytes())).unwrap();
        assert_eq!((f.kind.as_str(), f.location.as_str()), ("slack-bot-token", "body"));
        // The built-in formats still deny what the scanner rates lower (an AWS key id) or
        // treats as a documentation example.
        let f = d.check(&headers(&[("x-aws", "AKIAIOSFODNN7EXAMPLE")]), "/", None).unwrap();
        assert_eq!((f.kind.as_str(), f.location.as_str()), ("aws_access_key_id", "header:x-aws"));
        let f = d.check(&HeaderMap::new(), &format!("/stg/x?k={GH_VALID}"), None).unwrap();
        assert_eq!(f.location, "target");
        // The right header is named when a header repeats.
        let f = d.check(&headers(&[("x-a", "1"), ("x-a", "2"), ("x-b", "3"), ("x-c", GH_VALID)]), "/", None).unwrap();
        assert_eq!(f.location, "header:x-c");
        // A token hidden in HTTP basic credentials.
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{GH_VALID}"));
        let f = d.check(&headers(&[("authorization", &format!("Basic {basic}"))]), "/", None).unwrap();
        assert_eq!(f.location, "header:authorization");
    }

    /// Issue 11: a credential the upstream would decode (percent- or JSON-escaped) is the
    /// same credential.
    #[test]
    fn encoded_credentials_are_found_as_the_upstream_would_decode_them() {
        let d = scanner();
        let pct: String = GH_VALID.bytes().map(|b| format!("%{b:02X}")).collect();
        let partial = GH_VALID.replacen('_', "%5f", 1);
        let uni: String = GH_VALID.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
        let first = format!("\\u0067{}", &GH_VALID[1..]);
        for (what, target, body) in [
            ("percent target", format!("/stg/x?k={pct}"), None),
            ("partly percent target", format!("/stg/x?k={partial}"), None),
            ("form body", "/stg/x".to_owned(), Some(format!("a=1&token={pct}"))),
            ("json \\u body", "/stg/x".to_owned(), Some(format!("{{\"t\":\"{uni}\"}}"))),
            ("json one escape", "/stg/x".to_owned(), Some(format!("{{\"t\":\"{first}\"}}"))),
        ] {
            assert!(d.check(&HeaderMap::new(), &target, body.as_deref().map(str::as_bytes)).is_some(), "{what}");
        }
        let f = d.check(&headers(&[("x-k", &partial)]), "/", None).unwrap();
        assert_eq!(f.location, "header:x-k");
        // Decoding finds nothing in ordinary encoded text.
        assert!(d.check(&HeaderMap::new(), "/stg/search?q=hello%20world", Some(b"{\"a\":\"caf\\u00e9\"}")).is_none());
        assert_eq!(json_unescape(br#"\ud83d\ude00 \/ \q"#), "\u{1F600} / \\q".as_bytes());
    }

    #[test]
    fn scanner_ignores_ordinary_requests_and_task_tokens() {
        let d = scanner();
        let task = "alk_EnQKCghAKIAIOSFODNN7EXAMPLE_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-xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx==";
        let h = headers(&[
            ("authorization", &format!("Bearer {task}")),
            ("x-airlock-token", task),
            ("content-type", "application/json"),
            ("user-agent", "curl/8.5.0"),
            ("x-request-id", "0193a5f2-7c1e-7d3a-9f4b-2a1c3e5d7f90"),
        ]);
        let bodies = [
            r#"{"query":"mutation { userCreate(name: \"app\", password: \"Tr0ub4dor&3-correct-horse\") { id } }"}"#.to_owned(),
            r#"{"query":"{ volumes { id name } }","variables":{"cursor":"dm9sLXByb2QtZGI6MTcwMDAwMDAwMA=="}}"#.to_owned(),
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"token":"{task}"}}}}}}"#),
            format!("{{\"sha\":\"{}\",\"uuid\":\"8f14e45f-ceea-467f-a0e6-1b2c3d4e5f60\"}}", "a3f1".repeat(10)),
        ];
        for b in &bodies {
            assert_eq!(d.check(&h, "/stg/graphql?first=10", Some(b.as_bytes())), None, "{b}");
        }
    }

    #[test]
    fn inline_allow_marker_cannot_silence_a_finding() {
        let d = scanner();
        let body = format!("{{\"k\":\"{GH_VALID}\",\"note\":\"airlock:allow\"}}");
        assert_eq!(d.check(&HeaderMap::new(), "/", Some(body.as_bytes())).unwrap().kind, "github-pat-classic");
        let h = headers(&[("x-k", &format!("{GH_VALID} # airlock:allow"))]);
        assert_eq!(d.check(&h, "/", None).unwrap().location, "header:x-k");
        assert_eq!(sanitise(b"a airlock:allow b").as_ref(), b"a airlock allow b");
        assert_eq!(sanitise(b"Bearer alk_abc-_=x y").as_ref(), format!("Bearer {} y", " ".repeat(11)).as_bytes());
        assert!(matches!(sanitise(b"plain"), Cow::Borrowed(_)));
    }
}
