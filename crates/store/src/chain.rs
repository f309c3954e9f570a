//! The audit hash chain.
//!
//! Owns the canonical byte form of an audit entry and the chaining rule
//! `hash = sha256(prev_hash || 0x0a || canonical(entry))`, shared by every
//! backend so a log written by one can be verified by any. It must never
//! depend on a backend or do I/O.

use sha2::{Digest, Sha256};

use crate::{AuditEntry, AuditEvent};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Canonical JSON of an entry's content (fixed field order, no whitespace).
pub fn canonical(seq: i64, event: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    canonical_into(&mut out, seq, event);
    out
}

/// Append the canonical JSON of an entry to `out`; returns the byte range of `detail`
/// inside `out` (the stored `detail` column is exactly those bytes, so it is serialised once).
///
/// The form is the compact JSON array `[seq,id,ts_ms,actor,action,subject,outcome,task_id,detail]`.
/// `serde_json::Value` objects are ordered maps (BTreeMap without preserve_order), so
/// `detail` serialises with sorted keys.
pub fn canonical_into(out: &mut Vec<u8>, seq: i64, event: &AuditEvent) -> std::ops::Range<usize> {
    fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
        serde_json::to_writer(&mut *out, v).expect("serialising strings, integers and JSON values cannot fail");
    }
    out.push(b'[');
    put(out, &seq);
    out.push(b',');
    put(out, &event.id);
    out.push(b',');
    put(out, &event.ts_ms);
    for field in [&event.actor, &event.action, &event.subject, &event.outcome] {
        out.push(b',');
        put(out, field);
    }
    out.push(b',');
    put(out, &event.task_id);
    out.push(b',');
    let start = out.len();
    put(out, &event.detail);
    let end = out.len();
    out.push(b']');
    start..end
}

/// The hash of an entry given its predecessor's hash.
pub fn link(prev_hash: &str, seq: i64, event: &AuditEvent) -> String {
    link_canonical(prev_hash, &canonical(seq, event))
}

/// The hash of an entry whose canonical form is `canonical` (from [`canonical_into`]).
pub fn link_canonical(prev_hash: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(canonical);
    hex::encode(h.finalize())
}

/// Where a chain stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first entry that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Verify a contiguous run of entries, starting after an entry whose hash is `prev`.
/// Returns the number of entries checked or the first break.
pub fn verify<'a>(mut prev: String, mut prev_seq: i64, entries: impl IntoIterator<Item = &'a AuditEntry>) -> Result<usize, Break> {
    let mut n = 0;
    for e in entries {
        if e.seq != prev_seq + 1 {
            return Err(Break { seq: e.seq, reason: format!("sequence gap: expected {}, found {}", prev_seq + 1, e.seq) });
        }
        if e.prev_hash != prev {
            return Err(Break { seq: e.seq, reason: "prev_hash does not match the previous entry's hash".into() });
        }
        let expect = link(&prev, e.seq, &e.event);
        if e.hash != expect {
            return Err(Break { seq: e.seq, reason: "hash does not match the entry's content (entry altered)".into() });
        }
        prev = e.hash.clone();
        prev_seq = e.seq;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: i64) -> AuditEvent {
        AuditEvent {
            id: format!("id-{n}"),
            ts_ms: n,
            actor: "cli:test".into(),
            action: "task.start".into(),
            subject: "t".into(),
            outcome: "ok".into(),
            task_id: None,
            detail: serde_json::json!({"b": 1, "a": 2}),
        }
    }

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let event = ev(seq);
                let hash = link(&prev, seq, &event);
                let e = AuditEntry { seq, event, prev_hash: prev.clone(), hash: hash.clone() };
                prev = hash;
                e
            })
            .collect()
    }

    /// The canonical form is byte for byte what `serde_json::json!([...])` produced before
    /// (logs written by earlier versions must keep verifying).
    #[test]
    fn canonical_form_is_the_json_array() {
        for (task, detail) in
            [(None, serde_json::json!({"b": 1, "a": [2, "x\"y"], "c": {"z": null, "é": 1.5}})), (Some("t-1".to_owned()), serde_json::Value::Null)]
        {
            let mut e = ev(7);
            e.task_id = task;
            e.detail = detail;
            e.subject = "quote \" backslash \\ nl \n uni \u{1}".into();
            let old = serde_json::to_vec(&serde_json::json!([-3, e.id, e.ts_ms, e.actor, e.action, e.subject, e.outcome, e.task_id, e.detail])).unwrap();
            let mut buf = b"prefix".to_vec();
            let r = canonical_into(&mut buf, -3, &e);
            assert_eq!(&buf[6..], &old[..]);
            assert_eq!(&buf[r], serde_json::to_string(&e.detail).unwrap().as_bytes());
            assert_eq!(canonical(-3, &e), old);
        }
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify(GENESIS.into(), 0, &chain(5)), Ok(5));
    }

    #[test]
    fn altered_entry_is_found() {
        let mut c = chain(5);
        c[2].event.outcome = "denied".into();
        assert_eq!(verify(GENESIS.into(), 0, &c).unwrap_err().seq, 3);
    }

    #[test]
    fn deleted_entry_is_found() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(GENESIS.into(), 0, &c).unwrap_err().seq, 3);
    }

    #[test]
    fn rehashed_entry_breaks_the_next_link() {
        let mut c = chain(5);
        c[1].event.actor = "someone-else".into();
        c[1].hash = link(&c[1].prev_hash, 2, &c[1].event);
        assert_eq!(verify(GENESIS.into(), 0, &c).unwrap_err().seq, 3);
    }
}
