//! Response redaction: no echo of the secret reaches the agent.
//!
//! This module owns [`Needles`] (the secret and the encodings it was sent in), masking
//! header values that contain one, and [`RedactBody`], a streaming body wrapper that
//! masks needles across chunk boundaries by holding back the last `longest - 1` bytes of
//! each chunk until the next one arrives. Masking keeps the length (each byte becomes
//! `*`), so `Content-Length` stays correct and nothing is buffered beyond that window.
//!
//! It must never log what it masked, and never pass a byte through before it is sure
//! that byte cannot be the start of a needle completed by a later chunk.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use aho_corasick::{AhoCorasick, MatchKind};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use zeroize::Zeroizing;

/// What a header value containing a secret is replaced with.
pub const REDACTED_HEADER: &str = "[redacted by airlock]";

/// Every form an echo of `secret` can take in a response, for [`Needles::new`]: the raw
/// bytes; base64 (standard and URL-safe, padded or not) at each of the three alignments the
/// secret can have inside a longer encoded blob (only the characters that depend on the
/// secret alone); hex (lower and upper case); percent-encoding of every byte but the
/// unreserved ones (upper- and lower-case hex digits) and of every byte; a JSON string body
/// (with `/` escaped and not, and with every non-alphanumeric byte as `\u00XX`).
///
/// Forms shorter than 8 bytes are left out: they would mask ordinary text.
pub fn echo_forms(secret: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    let mut out: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(secret.to_vec())];
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for shift in 0..3usize {
        let mut shifted = Zeroizing::new(vec![0u8; shift]);
        shifted.extend_from_slice(secret);
        // Characters fed only by the secret's bytes: skip those mixing in the shift bytes at
        // the start, and the last group when it is not full (it depends on what follows).
        let skip = (shift * 8).div_ceil(6);
        let full = shifted.len() / 3 * 4;
        for e in engines {
            let enc = Zeroizing::new(e.encode(&*shifted));
            if shift == 0 {
                out.push(Zeroizing::new(enc.as_bytes().to_vec()));
            }
            if full > skip {
                out.push(Zeroizing::new(enc.as_bytes()[skip..full].to_vec()));
            }
        }
    }
    let hex_lower = Zeroizing::new(hex::encode(secret));
    out.push(Zeroizing::new(hex_lower.as_bytes().to_vec()));
    out.push(Zeroizing::new(hex_lower.to_ascii_uppercase().into_bytes()));
    // Percent-encoders differ in which bytes they leave alone, and JSON encoders in which
    // they escape (`\/`, `\u003c`…), but each treats a given byte the same way everywhere:
    // one form per choice of spelling for each distinct byte of the secret.
    let hex_escape = |b: u8, upper: bool| if upper { format!("%{b:02X}").into_bytes() } else { format!("%{b:02x}").into_bytes() };
    for upper in [true, false] {
        out.extend(spellings(secret, |b| {
            if b.is_ascii_alphanumeric() {
                vec![vec![b]]
            } else if b == b' ' {
                vec![vec![b], hex_escape(b, upper), b"+".to_vec()]
            } else {
                vec![vec![b], hex_escape(b, upper)]
            }
        }));
        // Every byte encoded, letters and digits too.
        out.push(Zeroizing::new(secret.iter().flat_map(|b| hex_escape(*b, upper)).collect()));
    }
    let unicode = |b: u8, upper: bool| if upper { format!("\\u{b:04X}").into_bytes() } else { format!("\\u{b:04x}").into_bytes() };
    for upper in [false, true] {
        out.extend(spellings(secret, |b| match b {
            b'"' => vec![b"\\\"".to_vec(), unicode(b, upper)],
            b'\\' => vec![b"\\\\".to_vec(), unicode(b, upper)],
            b'/' => vec![vec![b], b"\\/".to_vec(), unicode(b, upper)],
            b'\n' => vec![b"\\n".to_vec(), unicode(b, upper)],
            b'\r' => vec![b"\\r".to_vec(), unicode(b, upper)],
            b'\t' => vec![b"\\t".to_vec(), unicode(b, upper)],
            b'\x08' => vec![b"\\b".to_vec(), unicode(b, upper)],
            b'\x0c' => vec![b"\\f".to_vec(), unicode(b, upper)],
            _ if b < 0x20 => vec![unicode(b, upper)],
            _ if b.is_ascii_alphanumeric() || b >= 0x80 => vec![vec![b]],
            _ => vec![vec![b], unicode(b, upper)],
        }));
    }
    out.retain(|f| f.len() >= 8);
    out
}

/// Every spelling of `secret` where each distinct byte is written one of the ways
/// `options(byte)` lists (the first being the plain one), the same way at each of its
/// occurrences. Above 256 combinations only the all-first, all-second and all-last
/// spellings are produced.
fn spellings(secret: &[u8], options: impl Fn(u8) -> Vec<Vec<u8>>) -> Vec<Zeroizing<Vec<u8>>> {
    let mut distinct: Vec<u8> = secret.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let opts: Vec<Vec<Vec<u8>>> = distinct.iter().map(|b| options(*b)).collect();
    let combos = opts.iter().try_fold(1usize, |acc, o| acc.checked_mul(o.len().max(1))).unwrap_or(usize::MAX);
    let picks: Vec<Vec<usize>> = if combos <= 256 {
        (0..combos)
            .map(|mut n| {
                opts.iter()
                    .map(|o| {
                        let c = n % o.len().max(1);
                        n /= o.len().max(1);
                        c
                    })
                    .collect()
            })
            .collect()
    } else {
        vec![vec![0; opts.len()], opts.iter().map(|o| 1.min(o.len() - 1)).collect(), opts.iter().map(|o| o.len() - 1).collect()]
    };
    picks
        .into_iter()
        .map(|pick| {
            let mut f = Zeroizing::new(Vec::with_capacity(secret.len() * 3));
            for &b in secret {
                let i = distinct.binary_search(&b).expect("every byte is in distinct");
                f.extend_from_slice(&opts[i][pick[i]]);
            }
            f
        })
        .collect()
}

/// The byte patterns that must never reach the agent.
pub struct Needles {
    ac: AhoCorasick,
    longest: usize,
    // Kept only so the patterns are zeroized with the automaton's owner; the automaton
    // itself holds a copy we cannot zeroize (documented limitation).
    _patterns: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Needles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needles").field("longest", &self.longest).finish_non_exhaustive()
    }
}

impl Needles {
    /// Build from patterns (empty ones are ignored). `None` if there is nothing to look for.
    pub fn new(patterns: Vec<Zeroizing<Vec<u8>>>) -> Option<Arc<Self>> {
        let mut patterns: Vec<_> = patterns.into_iter().filter(|p| !p.is_empty()).collect();
        patterns.sort_by(|a, b| a.as_slice().cmp(b.as_slice()));
        patterns.dedup_by(|a, b| a.as_slice() == b.as_slice());
        if patterns.is_empty() {
            return None;
        }
        let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let ac = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(patterns.iter().map(|p| p.as_slice())).ok()?;
        Some(Arc::new(Self { ac, longest, _patterns: patterns }))
    }

    /// Whether `hay` contains any needle.
    pub fn found_in(&self, hay: &[u8]) -> bool {
        self.ac.is_match(hay)
    }

    /// Mask every needle occurrence in `buf` in place; returns how many were masked.
    pub fn mask(&self, buf: &mut [u8]) -> usize {
        let spans: Vec<_> = self.ac.find_iter(&*buf).map(|m| m.range()).collect();
        for r in &spans {
            buf[r.clone()].fill(b'*');
        }
        spans.len()
    }

    /// Replace every header value that contains a needle; returns how many were replaced.
    pub fn redact_headers(&self, headers: &mut HeaderMap) -> usize {
        let mut n = 0;
        for v in headers.values_mut() {
            if self.found_in(v.as_bytes()) {
                *v = HeaderValue::from_static(REDACTED_HEADER);
                n += 1;
            }
        }
        n
    }
}

pin_project_lite::pin_project! {
    /// A body whose data has every needle masked, across chunk boundaries.
    pub struct RedactBody<B> {
        #[pin]
        inner: B,
        needles: Arc<Needles>,
        carry: BytesMut,
        trailers: Option<HeaderMap>,
        done: bool,
        masked: Arc<AtomicUsize>,
    }
}

impl<B> RedactBody<B> {
    /// Wrap `inner`; every masked occurrence is counted in `masked`.
    pub fn new(inner: B, needles: Arc<Needles>, masked: Arc<AtomicUsize>) -> Self {
        Self { inner, needles, carry: BytesMut::new(), trailers: None, done: false, masked }
    }
}

impl<B> Body for RedactBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match std::task::ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.carry.extend_from_slice(&data);
                        let n = this.needles.mask(this.carry);
                        if n > 0 {
                            this.masked.fetch_add(n, Ordering::Relaxed);
                        }
                        let keep = (this.needles.longest - 1).min(this.carry.len());
                        let emit = this.carry.len() - keep;
                        if emit == 0 {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(this.carry.split_to(emit).freeze()))));
                    }
                    Err(frame) => {
                        // Trailers end the body: flush held data first, trailers next poll.
                        let Ok(mut t) = frame.into_trailers() else { continue };
                        this.needles.redact_headers(&mut t);
                        *this.done = true;
                        if this.carry.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::trailers(t))));
                        }
                        *this.trailers = Some(t);
                        return Poll::Ready(Some(Ok(Frame::data(this.carry.split().freeze()))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    if this.carry.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(this.carry.split().freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        (self.done && self.trailers.is_none()) || (!self.done && self.inner.is_end_stream() && self.carry.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        // Masking keeps the length.
        let mut h = self.inner.size_hint();
        let c = self.carry.len() as u64;
        h.set_lower(h.lower() + c);
        if let Some(u) = h.upper() {
            h.set_upper(u + c);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    /// An echo of the secret is masked in every encoding `echo_forms` claims to cover,
    /// including base64 at each alignment inside a longer blob.
    #[test]
    fn echoes_are_found_in_every_encoding_claimed() {
        use base64::Engine as _;
        let secret = b"sk-live/Secret+Value=0123456789\"quote";
        let n = Needles::new(echo_forms(secret)).unwrap();
        let b64 = |e: &base64::engine::GeneralPurpose, prefix: &[u8]| {
            let mut v = prefix.to_vec();
            v.extend_from_slice(secret);
            v.extend_from_slice(b"trailing bytes");
            e.encode(v).into_bytes()
        };
        let mut forms: Vec<(String, Vec<u8>)> = vec![("raw".into(), secret.to_vec())];
        for prefix in [&b""[..], b"x", b"xy", b"xyz", b"{\"token\":\""] {
            forms.push((format!("base64 after {prefix:?}"), b64(&base64::engine::general_purpose::STANDARD, prefix)));
            forms.push((format!("base64url after {prefix:?}"), b64(&base64::engine::general_purpose::URL_SAFE_NO_PAD, prefix)));
        }
        forms.push(("hex".into(), hex::encode(secret).into_bytes()));
        forms.push(("HEX".into(), hex::encode_upper(secret).into_bytes()));
        forms.push((
            "percent".into(),
            percent_encoding::utf8_percent_encode(std::str::from_utf8(secret).unwrap(), percent_encoding::NON_ALPHANUMERIC).to_string().into_bytes(),
        ));
        forms.push(("json".into(), serde_json::to_string(std::str::from_utf8(secret).unwrap()).unwrap().into_bytes()));
        for (what, form) in forms {
            let mut hay = b"answer: ".to_vec();
            hay.extend_from_slice(&form);
            hay.extend_from_slice(b" end");
            assert!(n.found_in(&hay), "{what} not found");
        }
        // Ordinary text is not masked.
        assert!(!n.found_in(b"an ordinary answer with base64 aGVsbG8gd29ybGQ= and hex 0123abcd"));
    }

    use super::*;
    use http_body_util::BodyExt;
    use std::collections::VecDeque;

    /// A body that yields the given chunks one frame each.
    struct Chunks(VecDeque<Bytes>);
    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn needles(p: &[&str]) -> Arc<Needles> {
        Needles::new(p.iter().map(|s| Zeroizing::new(s.as_bytes().to_vec())).collect()).unwrap()
    }

    async fn run(chunks: Vec<&'static str>, n: Arc<Needles>) -> String {
        let body = RedactBody::new(Chunks(chunks.into_iter().map(|c| Bytes::from_static(c.as_bytes())).collect()), n, Default::default());
        let out = body.collect().await.unwrap().to_bytes();
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn masks_across_chunks() {
        let n = needles(&["sk-SECRET-123"]);
        let got = run(vec!["hello sk-SEC", "RET-1", "23 and sk-SECRET-123!", "sk-SECRET-12"], n).await;
        assert_eq!(got, "hello ************* and *************!sk-SECRET-12");
        assert!(!got.contains("sk-SECRET-123"));
    }

    #[tokio::test]
    async fn byte_by_byte_and_lengths_preserved() {
        let n = needles(&["abcdef", "QUJD"]);
        let input = "xxabcdefyyQUJDzzabcde";
        let chunks: Vec<&'static str> = (0..input.len()).map(|i| &input[i..i + 1]).collect();
        let got = run(chunks, n).await;
        assert_eq!(got.len(), input.len());
        assert_eq!(got, "xx******yy****zzabcde");
    }

    /// A body that yields its chunks and then never ends (an SSE stream still open).
    struct Open(VecDeque<Bytes>);
    impl Body for Open {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn streams_pass_through_before_the_body_ends() {
        // SSE events arrive one by one; each is passed on at once (all but the hold-back
        // window), the secret split across two events is masked, and nothing waits for the end.
        let n = needles(&["sk-SECRET-123"]);
        let events = ["event: a\ndata: {\"t\":\"hello\"}\n\n", "event: b\ndata: {\"t\":\"sk-SEC", "RET-123\"}\n\n", "event: c\ndata: {}\n\n"];
        let mut body = RedactBody::new(Open(events.iter().map(|e| Bytes::from_static(e.as_bytes())).collect()), n, Default::default());
        let mut out = Vec::new();
        for _ in 0..events.len() {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(1), body.frame()).await.expect("a frame before the end").unwrap().unwrap();
            out.extend_from_slice(frame.data_ref().unwrap());
        }
        let got = String::from_utf8(out).unwrap();
        let all: String = events.concat();
        assert!(got.starts_with("event: a\ndata: {\"t\":\"hello\"}\n\nevent: b\ndata: {\"t\":\"*************\"}"), "{got}");
        assert_eq!(got.len(), all.len() - ("sk-SECRET-123".len() - 1), "only the hold-back window is pending");
    }

    #[test]
    fn headers() {
        let n = needles(&["tok123"]);
        let mut h = HeaderMap::new();
        h.insert("x-echo", HeaderValue::from_static("Bearer tok123"));
        h.insert("x-ok", HeaderValue::from_static("fine"));
        assert_eq!(n.redact_headers(&mut h), 1);
        assert_eq!(h["x-echo"], REDACTED_HEADER);
        assert_eq!(h["x-ok"], "fine");
    }
}
