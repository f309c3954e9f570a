//! Sources: where bytes to scan come from.
//!
//! This module owns enumerating and reading inputs — files (including gitignored and
//! hidden ones), git history blobs, process environments, home-directory credential
//! locations, a workspace (files plus the history of the repositories in it) — and handing their bytes to the [`crate::Scanner`]. Sources never
//! interpret matches and never log file contents.

pub mod env;
pub mod files;
pub mod git;
pub mod home;
pub mod workspace;

/// Bytes inspected for a NUL to decide a file is binary.
pub const BINARY_SNIFF: usize = 8 * 1024;

/// Whether `data` looks binary (a NUL byte in the first 8 KiB).
#[must_use]
pub fn looks_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_SNIFF)]).is_some()
}
