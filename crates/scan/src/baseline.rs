//! Baselines: a JSON file of finding fingerprints to suppress (`--baseline`,
//! `--write-baseline`).
//!
//! Format: `{"version": 1, "fingerprints": ["<32 hex>", …]}` (sorted, unique). Only
//! fingerprints are stored — never secrets, masked values or paths — so a baseline is
//! safe to commit.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Finding};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineFile {
    version: u32,
    fingerprints: BTreeSet<String>,
}

/// Read a baseline file into a set of fingerprints.
pub fn read_baseline(path: &Path) -> Result<HashSet<String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.display().to_string(), action: "read the baseline file", source: e })?;
    let b: BaselineFile = serde_json::from_str(&text).map_err(|e| Error::Baseline { path: path.display().to_string(), reason: e.to_string() })?;
    if b.version != 1 {
        return Err(Error::Baseline { path: path.display().to_string(), reason: format!("unsupported version {}", b.version) });
    }
    if let Some(bad) = b.fingerprints.iter().find(|f| f.len() != 32 || !f.bytes().all(|c| c.is_ascii_hexdigit())) {
        return Err(Error::Baseline { path: path.display().to_string(), reason: format!("{bad:?} is not a fingerprint (32 hex digits)") });
    }
    Ok(b.fingerprints.into_iter().collect())
}

/// Write the fingerprints of `findings` as a baseline file.
pub fn write_baseline(path: &Path, findings: &[Finding]) -> Result<(), Error> {
    let b = BaselineFile { version: 1, fingerprints: findings.iter().map(|f| f.fingerprint.clone()).collect() };
    let mut text = serde_json::to_string_pretty(&b).expect("a set of strings serializes");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::Io { path: path.display().to_string(), action: "write the baseline file", source: e })
}
