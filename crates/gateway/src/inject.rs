//! Putting a credential in the form its upstream takes it.
//!
//! This module owns [`inject`] (header with prefix and suffix, HTTP Basic, query
//! parameter), shared by the request path and the inventory lookup so both send a
//! credential the same way, and [`truncate`] for messages that quote input. It must never
//! log or return the credential in any form but the one it builds to send.

use base64::Engine as _;
use http::header::{self, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use crate::config::Injection;

/// Characters percent-encoded in an injected query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// A credential in the form its upstream takes it (see [`inject`]).
pub(crate) struct Injected {
    /// The header to set (name, value marked sensitive), for header and basic injection.
    pub(crate) header: Option<(HeaderName, HeaderValue)>,
    /// `param=value` (value percent-encoded) to append to the query, for query injection.
    pub(crate) query: Option<Zeroizing<String>>,
    /// The encoded form the credential travels in, beyond the raw value (the base64 of
    /// `user:secret`, the percent-encoded value): an echo of it must be redacted too.
    pub(crate) encoded: Option<Zeroizing<Vec<u8>>>,
}

/// Put `raw` in the form `injection` sends it. `Err(())`: the value cannot be sent that
/// way (bytes a header may not hold, or a query value that is not UTF-8). Shared by the
/// request path and the inventory lookup, so both send a credential the same way.
pub(crate) fn inject(injection: &Injection, raw: &[u8]) -> Result<Injected, ()> {
    match injection {
        Injection::Header { name, prefix, suffix } => {
            let mut v = Zeroizing::new(Vec::with_capacity(prefix.len() + raw.len() + suffix.len()));
            v.extend_from_slice(prefix.as_bytes());
            v.extend_from_slice(raw);
            v.extend_from_slice(suffix.as_bytes());
            let mut hv = HeaderValue::from_bytes(&v).map_err(|_| ())?;
            hv.set_sensitive(true);
            Ok(Injected { header: Some((name.clone(), hv)), query: None, encoded: None })
        }
        Injection::Basic { username } => {
            let mut userpass = Zeroizing::new(Vec::with_capacity(username.len() + 1 + raw.len()));
            userpass.extend_from_slice(username.as_bytes());
            userpass.push(b':');
            userpass.extend_from_slice(raw);
            let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*userpass));
            let mut hv = HeaderValue::from_str(&format!("Basic {}", &*b64)).map_err(|_| ())?;
            hv.set_sensitive(true);
            Ok(Injected { header: Some((header::AUTHORIZATION, hv)), query: None, encoded: Some(Zeroizing::new(b64.as_bytes().to_vec())) })
        }
        Injection::Query { param } => {
            let value = std::str::from_utf8(raw).map_err(|_| ())?;
            let enc = Zeroizing::new(utf8_percent_encode(value, QUERY_VALUE).to_string());
            let query = Zeroizing::new(format!("{param}={}", &*enc));
            Ok(Injected { header: None, query: Some(query), encoded: Some(Zeroizing::new(enc.as_bytes().to_vec())) })
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary (for messages quoting input).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}
