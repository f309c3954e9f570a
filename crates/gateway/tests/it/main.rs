//! Integration tests for the airlock gateway: a local TLS upstream with a test CA, the
//! gateway in-process with the real token verifier, vault, policy and SQLite audit.

mod attacks;
mod depth;
mod e2e;
mod forward;
mod harness;
mod models;
mod props;
mod startup;
