//! `airlock run`: start an agent with no secrets in reach.
//!
//! This crate owns the launcher's mechanisms, each in its own module:
//! * [`scrub`] — which inherited environment variables the agent may see;
//! * [`preflight`] — the workspace and environment scan that refuses a run when a
//!   secret is readable (through the [`preflight::Detector`] seam);
//! * [`scan_detector`] — that seam backed by the `airlock-scan` engine (what `airlock
//!   run` uses, so preflight and `airlock scan` agree);
//! * [`sandbox`] — planning and applying the Landlock ruleset;
//! * [`isolate`] — the agent's own network, PID and mount namespaces, and no capabilities;
//! * [`seccomp`] — the system calls that would get around Landlock and the namespaces;
//! * [`relay`] — the gateway bridged into the agent's network namespace;
//! * [`exe`] — what the agent's program needs to run (installation roots, interpreters);
//! * [`home`] — the agent's private home and the harmless config copied into it;
//! * [`launch`] — from the flags and the kernel to the exact sandbox, the gateway check, the closing hint;
//! * [`supervise`] — the two-stage trampoline, signal forwarding and exit pass-through;
//! * [`summary`] — the closing per-upstream counts from the audit log;
//! * [`orchestrate`] — the whole launch in order ([`orchestrate::Launch::run`]): checks, plan,
//!   scrub and preflight, gateway check, task token, supervision, ending the task on every
//!   way out, the audit records and the closing summary.
//!
//! Opening the store, the state directory and the configuration, and printing, are the
//! caller's (the CLI's) job: [`orchestrate::Report`] is told what to say. Nothing here ever
//! prints, logs or returns a secret value: findings and removed variables carry names and
//! places only.

pub mod exe;
pub mod home;
pub mod isolate;
pub mod launch;
pub mod orchestrate;
pub mod preflight;
pub mod relay;
pub mod sandbox;
pub mod scan_detector;
pub mod scrub;
pub mod seccomp;
pub mod summary;
pub mod supervise;
pub mod usage;

/// Exit code of `airlock run` when the preflight scan refuses to start the agent.
pub const EXIT_PREFLIGHT: u8 = 5;

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The preflight scan could not complete (so it cannot vouch for the workspace).
    #[error("preflight scan failed: {0}; fix the cause or pass --allow-findings to skip the guarantee")]
    Preflight(String),
    /// The sandbox cannot be planned or applied as asked.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The trampoline could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program (airlock itself).
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The agent's program could not be executed inside the sandbox.
    #[error("cannot run {program}: {source} (programs outside the workspace and system paths need --allow-read DIR)")]
    Exec {
        /// The program as given.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// Signal handling or waiting failed.
    #[error("supervision: {0}")]
    Signal(String),
}
