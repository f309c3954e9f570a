//! A bounded look at the start of a streamed request body.
//!
//! REST bodies are streamed to the upstream, never buffered whole; but the raw-credential
//! check must see what the agent sends, up to the classification cap. [`read_prefix`] reads
//! frames until it holds at least `limit` bytes or the body ends, and gives back the bytes
//! read plus a body ([`Prefixed`]) that yields exactly the original byte sequence again:
//! the prefix first, then whatever was still unread, trailers included.
//!
//! It must never hold more than `limit` plus one frame, and never drop, reorder or alter a
//! byte: what the upstream receives is what the agent sent.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::client::{BoxError, ReqBody};

/// The start of a body, and the whole body to forward.
pub struct Prefix {
    /// The first bytes of the body: at least `limit` of them unless the body was shorter
    /// (the last frame read may take it a little past `limit`).
    pub head: Bytes,
    /// Whether `head` is the whole body.
    pub complete: bool,
    /// The body to forward: `head`, then the rest, exactly as the agent sent it.
    pub body: ReqBody,
}

/// Read `body` until at least `limit` bytes (or its end), without waiting for more.
///
/// A frame error is returned as is; nothing has been forwarded at that point.
pub async fn read_prefix(mut body: ReqBody, limit: usize) -> Result<Prefix, BoxError> {
    let mut head = BytesMut::new();
    let mut held: Option<Frame<Bytes>> = None;
    let mut complete = true;
    while head.len() < limit {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => head.extend_from_slice(&data),
                Err(trailers) => {
                    // Trailers end the body's data: keep them for after the prefix.
                    held = Some(trailers);
                    break;
                }
            },
        }
    }
    if head.len() >= limit && held.is_none() && !body.is_end_stream() {
        complete = false;
    }
    let head = head.freeze();
    let rest = if complete && held.is_none() { None } else { Some(body) };
    let forward = Prefixed { head: (!head.is_empty()).then(|| head.clone()), held, rest };
    Ok(Prefix { head, complete, body: forward.boxed_unsync() })
}

/// `head`, then a held frame (trailers), then the rest of the original body.
struct Prefixed {
    head: Option<Bytes>,
    held: Option<Frame<Bytes>>,
    rest: Option<ReqBody>,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(h) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(h))));
        }
        if let Some(f) = self.held.take() {
            return Poll::Ready(Some(Ok(f)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.held.is_none() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self.rest.as_ref().map_or_else(|| SizeHint::with_exact(0), |r| r.size_hint());
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn chunks(parts: &[&'static [u8]], trailers: bool) -> ReqBody {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p)))).collect();
        if trailers {
            let mut t = http::HeaderMap::new();
            t.insert("x-checksum", http::HeaderValue::from_static("abc"));
            frames.push(Ok(Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    async fn collect(body: ReqBody) -> (Vec<u8>, Option<http::HeaderMap>) {
        let c = body.collect().await.unwrap();
        let trailers = c.trailers().cloned();
        (c.to_bytes().to_vec(), trailers)
    }

    #[tokio::test]
    async fn short_body_is_read_whole_and_forwarded_unchanged() {
        let p = read_prefix(chunks(&[b"abc", b"def"], false), 1024).await.unwrap();
        assert_eq!(&p.head[..], b"abcdef");
        assert!(p.complete);
        assert_eq!(collect(p.body).await.0, b"abcdef");
    }

    #[tokio::test]
    async fn long_body_stops_at_the_cap_and_the_rest_follows_in_order() {
        let p = read_prefix(chunks(&[b"0123", b"4567", b"89ab", b"cdef"], false), 6).await.unwrap();
        assert_eq!(&p.head[..], b"01234567", "stops after the frame that reaches the cap");
        assert!(!p.complete);
        assert_eq!(collect(p.body).await.0, b"0123456789abcdef");
    }

    #[tokio::test]
    async fn trailers_are_kept() {
        let p = read_prefix(chunks(&[b"abc"], true), 1024).await.unwrap();
        assert_eq!(&p.head[..], b"abc");
        let (bytes, trailers) = collect(p.body).await;
        assert_eq!(bytes, b"abc");
        assert_eq!(trailers.unwrap()["x-checksum"], "abc");
    }

    #[tokio::test]
    async fn empty_body_stays_empty() {
        let p = read_prefix(Full::new(Bytes::new()).map_err(|e| match e {}).boxed_unsync(), 1024).await.unwrap();
        assert!(p.head.is_empty() && p.complete);
        assert!(p.body.is_end_stream());
        assert_eq!(collect(p.body).await.0, b"");
    }

    #[tokio::test]
    async fn size_hint_counts_the_prefix() {
        let full = Full::new(Bytes::from_static(b"0123456789")).map_err(|e| match e {}).boxed_unsync();
        let p = read_prefix(full, 4).await.unwrap();
        assert_eq!(p.body.size_hint().exact(), Some(10));
    }

    #[tokio::test]
    async fn a_read_error_is_returned() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![Ok(Frame::data(Bytes::from_static(b"ab"))), Err("reset by peer".into())];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        assert!(read_prefix(body, 1024).await.is_err());
    }
}
