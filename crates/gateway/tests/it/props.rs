//! Property tests for every parser the agent's bytes reach (issue 11): routing, the
//! classifiers, the event-stream filter, the prefix reader and redaction. None may panic on
//! any input, the prefix reader must give back exactly the bytes it was given, and
//! redaction must never let a planted secret through in any encoding it claims to cover,
//! however the answer is cut into chunks.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use airlock_gateway::classify::Classifier;
use airlock_gateway::graphql::GraphqlClassifier;
use airlock_gateway::mcp::{McpClassifier, filter_tools_list};
use airlock_gateway::redact::{Needles, RedactBody, echo_forms};
use bytes::Bytes;
use http_body_util::BodyExt;
use proptest::prelude::*;

use crate::harness::Chunks;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

/// Cut `data` at the given points (taken modulo its length).
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|c| if data.is_empty() { 0 } else { c % data.len() }).collect();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| Bytes::copy_from_slice(&data[w[0]..w[1]])).filter(|b| !b.is_empty()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn routing_never_panics_and_never_escapes(path in "(/[a-zA-Z0-9%._~:@!$&'()*+,;=-]{0,12}){0,6}(\\?[ -~]{0,20})?") {
        if let Ok(uri) = path.parse::<http::Uri>()
            && let Ok(r) = airlock_gateway::route::route(&uri)
        {
            for s in &r.segments {
                prop_assert!(s != ".." && s != ".", "{path} -> {:?}", r.segments);
            }
        }
    }

    #[test]
    fn classifiers_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), text in "[ -~\\n]{0,300}") {
        let g = GraphqlClassifier::new();
        let _ = g.classify(&body, Some("application/json"));
        let _ = g.classify(text.as_bytes(), Some("application/json"));
        let _ = g.classify(serde_json::json!({ "query": text }).to_string().as_bytes(), Some("application/json"));
        let m = McpClassifier::new();
        let _ = m.classify(&body);
        let _ = m.classify(text.as_bytes());
        let c = Classifier::new(vec![]);
        let _ = c.one_meaning(&http::Method::POST, &http::HeaderMap::new(), Some(&text));
    }

    #[test]
    fn event_stream_filter_never_panics_and_output_reparses_to_itself(text in "[ -~\\r\\n\\u{feff}]{0,400}") {
        let all = |_: &str| true;
        if let Ok(out) = filter_tools_list(text.as_bytes(), true, &all) {
            // What airlock wrote is a canonical stream: filtering it again changes nothing.
            let again = filter_tools_list(&out, true, &all).unwrap();
            prop_assert_eq!(again, out);
        }
    }

    #[test]
    fn the_prefix_reader_gives_back_exactly_the_body(data in proptest::collection::vec(any::<u8>(), 0..4096), cuts in proptest::collection::vec(any::<usize>(), 0..12), limit in 0usize..5000) {
        let parts = chunks(&data, &cuts);
        let got = runtime().block_on(async move {
            let body = Chunks(parts.into()).map_err(|e| -> airlock_gateway::client::BoxError { match e {} }).boxed_unsync();
            let p = airlock_gateway::prefix::read_prefix(body, limit).await.unwrap();
            let head = p.head.clone();
            (head, p.body.collect().await.unwrap().to_bytes())
        });
        prop_assert!(data.starts_with(&got.0));
        prop_assert!(got.0.len() >= limit.min(data.len()));
        prop_assert_eq!(got.1.as_ref(), &data[..]);
    }

    #[test]
    fn redaction_never_lets_a_planted_secret_through(
        secret in "[!-~]{8,40}",
        form in 0usize..6,
        shift in 0usize..3,
        before in "[ -~]{0,60}",
        after in "[ -~]{0,60}",
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        use base64::Engine as _;
        let s = secret.as_bytes();
        let planted: Vec<u8> = match form {
            0 => s.to_vec(),
            1 => {
                let mut v = vec![b'x'; shift];
                v.extend_from_slice(s);
                v.extend_from_slice(b"tail");
                base64::engine::general_purpose::STANDARD.encode(v).into_bytes()
            }
            2 => hex::encode(s).into_bytes(),
            3 => percent_encoding::utf8_percent_encode(&secret, percent_encoding::NON_ALPHANUMERIC).to_string().into_bytes(),
            4 => serde_json::to_string(&secret).unwrap().into_bytes(),
            _ => base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s).into_bytes(),
        };
        let mut answer = before.clone().into_bytes();
        answer.extend_from_slice(&planted);
        answer.extend_from_slice(after.as_bytes());
        let needles = Needles::new(echo_forms(s)).unwrap();
        let parts = chunks(&answer, &cuts);
        let out = runtime().block_on(async move {
            let body = RedactBody::new(Chunks(parts.into()), needles, Arc::new(AtomicUsize::new(0)));
            body.collect().await.unwrap().to_bytes()
        });
        prop_assert_eq!(out.len(), answer.len(), "length kept");
        // The raw secret never survives, nor the part of an encoding fed by the secret alone.
        let hay = String::from_utf8_lossy(&out).into_owned();
        prop_assert!(!hay.contains(secret.as_str()), "{hay}");
        if form == 2 {
            prop_assert!(!hay.contains(&hex::encode(s)));
        }
        if form == 4 {
            let json = serde_json::to_string(&secret).unwrap();
            prop_assert!(!hay.contains(&json[1..json.len() - 1]), "{hay}");
        }
    }
}
