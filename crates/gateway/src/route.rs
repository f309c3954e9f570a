//! Routing: which upstream, which path below its base URL.
//!
//! This module owns reading the request target of an agent's request: only origin-form
//! (`/<upstream>/<path>?<query>`) is accepted; absolute-form, authority-form and `*` are
//! refused so that nothing the agent writes can choose the host. The path below the
//! upstream prefix is checked segment by segment after percent-decoding (repeatedly, to
//! catch double encoding): `.`/`..` segments, encoded `/` or `\`, NUL and ambiguous
//! encodings are refused, so a request can never leave the upstream's route prefix.
//!
//! It must never consult `Host`, `X-Forwarded-*` or any other header for routing.

use http::Uri;
use percent_encoding::percent_decode;

/// Why a request target was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Absolute-form, authority-form or asterisk-form request target.
    NotOriginForm,
    /// No upstream name in the path, or a malformed one.
    NoUpstream,
    /// A segment would escape the route prefix or is ambiguously encoded.
    Traversal(String),
}

/// A routed request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// The upstream name (first path segment).
    pub upstream: &'a str,
    /// The raw (still percent-encoded) path below the upstream prefix: empty or starting with `/`.
    pub rest: &'a str,
    /// Decoded segments of `rest` (a trailing empty segment from a final `/` is dropped).
    pub segments: Vec<String>,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
}

/// How many times a segment is decoded while looking for hidden traversal.
const MAX_DECODE_ROUNDS: usize = 3;

/// Route an origin-form request target.
pub fn route(uri: &Uri) -> Result<Route<'_>, RouteError> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(RouteError::NotOriginForm);
    }
    let path = uri.path();
    let Some(after) = path.strip_prefix('/') else {
        return Err(RouteError::NotOriginForm);
    };
    let (upstream, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let upstream_ok =
        !upstream.is_empty() && upstream.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) && upstream != "." && upstream != "..";
    if !upstream_ok {
        return Err(RouteError::NoUpstream);
    }
    let mut segments = Vec::new();
    if !rest.is_empty() {
        let raw: Vec<&str> = rest[1..].split('/').collect();
        let last = raw.len() - 1;
        for (i, seg) in raw.iter().enumerate() {
            if seg.is_empty() {
                if i == last {
                    break;
                }
                return Err(RouteError::Traversal("empty path segment ('//')".into()));
            }
            segments.push(check_segment(seg)?);
        }
    }
    Ok(Route { upstream, rest, segments, query: uri.query() })
}

/// Check one raw segment and return it decoded once.
fn check_segment(seg: &str) -> Result<String, RouteError> {
    let mut cur: Vec<u8> = seg.as_bytes().to_vec();
    let mut first: Option<String> = None;
    for round in 0..=MAX_DECODE_ROUNDS {
        check_plain(&cur)?;
        if !has_escape(&cur) {
            return Ok(first.unwrap_or_else(|| String::from_utf8_lossy(&cur).into_owned()));
        }
        if round == MAX_DECODE_ROUNDS {
            break;
        }
        cur = percent_decode(&cur).collect();
        if first.is_none() {
            first = Some(String::from_utf8_lossy(&cur).into_owned());
        }
    }
    Err(RouteError::Traversal("path segment is percent-encoded too many times".into()))
}

fn check_plain(b: &[u8]) -> Result<(), RouteError> {
    if b.iter().any(|&c| c == b'/' || c == b'\\' || c == 0 || c.is_ascii_control()) {
        return Err(RouteError::Traversal("encoded '/', '\\' or control character in a path segment".into()));
    }
    // `..;x` is `..` to servlet containers; compare the part before any ';'.
    let head = b.split(|&c| c == b';').next().unwrap_or(b);
    if head == b"." || head == b".." {
        return Err(RouteError::Traversal("'.' or '..' path segment".into()));
    }
    Ok(())
}

fn has_escape(b: &[u8]) -> bool {
    b.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Result<Route<'static>, RouteError> {
        let uri: &'static Uri = Box::leak(Box::new(s.parse::<Uri>().unwrap()));
        route(uri)
    }

    #[test]
    fn routes() {
        let x = r("/openai/v1/chat%20x/?a=1").unwrap();
        assert_eq!((x.upstream, x.rest, x.query), ("openai", "/v1/chat%20x/", Some("a=1")));
        assert_eq!(x.segments, vec!["v1", "chat x"]);
        let x = r("/gh").unwrap();
        assert_eq!((x.upstream, x.rest, x.segments.len()), ("gh", "", 0));
        assert_eq!(r("/a/100%25").unwrap().segments, vec!["100%"]);
    }

    #[test]
    fn refuses_other_forms() {
        assert_eq!(r("http://evil.example/x"), Err(RouteError::NotOriginForm));
        assert_eq!(r("evil.example:443"), Err(RouteError::NotOriginForm));
        assert_eq!(r("*"), Err(RouteError::NotOriginForm));
        assert_eq!(r("/"), Err(RouteError::NoUpstream));
        assert_eq!(r("/%6fpenai/x"), Err(RouteError::NoUpstream));
        assert_eq!(r("/../x"), Err(RouteError::NoUpstream));
    }

    #[test]
    fn refuses_traversal() {
        for bad in [
            "/up/../other",
            "/up/a/..",
            "/up/./a",
            "/up/%2e%2e/x",
            "/up/%2E%2e/x",
            "/up/.%2e/x",
            "/up/a%2Fb",
            "/up/a%2fb",
            "/up/a%5cb",
            "/up/%252e%252e/x",
            "/up/%25252e%25252e/x",
            "/up/%2525252e/x",
            "/up/..;/x",
            "/up/a%00b",
            "/up/a//b",
            "/up/%252F",
        ] {
            assert!(matches!(r(bad), Err(RouteError::Traversal(_))), "{bad} accepted");
        }
    }
}
