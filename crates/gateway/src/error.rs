//! The gateway crate's error type (startup and configuration failures).
//!
//! Errors here are for operators: they say what happened, why and what to do. They must
//! never contain a secret value; agent-facing refusals are [`crate::pipeline::Refusal`].

use std::path::PathBuf;

/// Why the gateway could not start or its configuration could not be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read gateway configuration {}: {source}; pass --config or set AIRLOCK_CONFIG", path.display())]
    ConfigRead {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is malformed or inconsistent; points at file, line and column.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Config {
        /// The configuration file (or `<inline>`).
        path: PathBuf,
        /// 1-based line of the offending value (0 when unknown).
        line: usize,
        /// 1-based column of the offending value (0 when unknown).
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A CA bundle named by `ca_file` could not be read or holds no certificate.
    #[error("upstream {upstream:?}: cannot use ca_file {}: {reason}", path.display())]
    CaFile {
        /// The upstream whose `ca_file` failed.
        upstream: String,
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS client configuration could not be built.
    #[error("cannot build the TLS client configuration: {0}")]
    Tls(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}; is another process using the port?")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy engine could not be built.
    #[error("cannot load policies: {0}")]
    Policy(#[from] airlock_policy::Error),
    /// A configured secret cannot be used for its upstream (missing, wrong environment, wrong upstream).
    #[error("{0}")]
    Secret(String),
    /// The raw-credential detector (the scanner's rules) could not be built.
    #[error("cannot build the raw-credential detector: {0}")]
    Scanner(String),
    /// The local airlock CA (forward-proxy mode) could not be created, read or used.
    #[error("local airlock CA: {0}")]
    LocalCa(String),
}
