//! Where an agent's task token is taken from: one rule for the reverse proxy and the
//! forward proxy.
//!
//! This module owns [`find_token`]: `X-Airlock-Token`, else the place where one of the
//! upstream's credentials goes (the phantom token: a header with its prefix and suffix,
//! HTTP Basic, a query parameter), else `Authorization: Bearer`. It only finds; verifying is
//! the verifier's job, and removing every other copy before forwarding is the pipeline's
//! (`token_misplaced`). It must never log or return anything but the token it found.

use base64::Engine as _;
use http::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::config::Injection;

/// The header carrying a task token when the upstream's own auth header is not used.
pub const TOKEN_HEADER: &str = "x-airlock-token";

/// The decoded name of a `name=value` query pair.
pub(crate) fn query_name(kv: &str) -> std::borrow::Cow<'_, str> {
    let name = kv.split_once('=').map(|(n, _)| n).unwrap_or(kv);
    percent_decode_str(name).decode_utf8_lossy()
}

/// Find the task token: `X-Airlock-Token`, else where one of `injections` puts the
/// upstream's credential (the first that holds something), else `Authorization: Bearer`.
pub fn find_token(headers: &HeaderMap, query: Option<&str>, injections: &[&Injection]) -> Option<String> {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty());
    if let Some(t) = header_str(TOKEN_HEADER) {
        return Some(t.to_owned());
    }
    for injection in injections {
        let found = match injection {
            Injection::Header { name, prefix, suffix } => header_str(name.as_str()).and_then(|v| {
                let v = if prefix.is_empty() {
                    v
                } else if v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
                    &v[prefix.len()..]
                } else {
                    return None;
                };
                Some(v.strip_suffix(suffix.as_str()).unwrap_or(v).trim().to_owned())
            }),
            Injection::Basic { .. } => header_str("authorization").and_then(|v| {
                let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
                let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
                let s = String::from_utf8(raw).ok()?;
                let (user, pass) = s.split_once(':').unwrap_or((&s, ""));
                Some(if pass.is_empty() { user.to_owned() } else { pass.to_owned() })
            }),
            Injection::Query { param } => query.and_then(|q| {
                q.split('&')
                    .find(|kv| query_name(kv) == param.as_str())
                    .and_then(|kv| kv.split_once('=').map(|(_, v)| v))
                    .map(|v| percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
            }),
        };
        if let Some(t) = found.filter(|t| !t.is_empty()) {
            return Some(t);
        }
    }
    header_str("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}
