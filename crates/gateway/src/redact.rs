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
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_slice()))
            .ok()?;
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
