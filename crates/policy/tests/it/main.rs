//! Integration tests for airlock-policy: the built-in rules both ways, precedence,
//! operator policy files, diagnostics and the disable list.

mod cache;
mod defaults;
mod fixture;
mod operator;
