//! Integration tests of airlock-scan: every rule's examples, every source, every
//! output format, baselines and inline suppression. One test binary (`it`).
#![allow(missing_docs)]

mod cache;
mod report;
mod rules;
mod sources;
mod variables;
mod workspace;

use std::path::{Path, PathBuf};

use airlock_scan::Scanner;

/// The fixture rule file: a small rule set independent of the built-in rules.
pub const TEST_RULES: &str = include_str!("fixtures/test-rules.toml");

/// A GitHub classic PAT whose CRC32 checksum is valid (from the fixture rule's example).
pub const GH_TOKEN: &str = "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";

/// An RSA private key block the fixture rule `test-private-key` finds.
pub const PEM_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBqX0hmWQ8mYpZk3rY0Jm2wq9pXb5mL7sTqv2yN1w4C6AAAAJgAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

/// A scanner with only the fixture rules.
pub fn test_scanner() -> Scanner {
    Scanner::from_toml(&[("test-rules.toml", TEST_RULES)]).expect("fixture rules load")
}

/// The fixture rule file on disk (for APIs that take paths).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures").join(name)
}

/// Write `contents` at `root/rel`, creating parent directories.
pub fn put(root: &Path, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, contents).unwrap();
    p
}
