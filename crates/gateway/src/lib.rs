//! The airlock gateway: verify, classify, decide, audit, inject, forward, redact.
//!
//! An agent calls `http://<gateway>/<upstream>/<path>` with its task token where the API
//! key used to be. The gateway verifies the token, binds it to the upstream's environment,
//! classifies the operation, asks Cedar policy, writes a durable audit record, swaps the
//! token for the real credential from the vault and forwards over TLS to the upstream's
//! one configured host, redacting any echo of the credential on the way back.
//!
//! Start reading at [`pipeline`]: the whole request path is in that one file.
//!
//! Module map: [`config`] (airlock.toml), [`route`] (request target → upstream + checked
//! path), [`classify`] (operations), [`ports`] (token verifier and vault traits),
//! [`audit`] (group commit), [`client`] (outbound TLS, bound connector), [`redact`]
//! (streaming redaction), [`server`] (listeners), [`env`] (`airlock env`), [`presets`]
//! (built-in model API upstreams), [`grants`] (grants checked against the config),
//! [`placement`] (where the config may live).
//!
//! This crate must never log, return or audit a secret value, and never forward a request
//! it has any doubt about.

pub mod approvals;
pub mod audit;
pub mod ca;
pub mod classify;
pub mod client;
pub mod codes;
pub mod config;
pub mod env;
mod error;
pub mod forward;
pub mod grants;
pub mod graphql;
pub mod inventory;
pub mod mcp;
pub mod pipeline;
pub mod placement;
pub mod ports;
pub mod prefix;
pub mod presets;
pub mod rawcred;
pub mod redact;
pub mod route;
pub mod server;
pub mod token_place;

pub use error::Error;
pub use pipeline::{Admitted, Gateway, RawCredentialCheck, Refusal};
