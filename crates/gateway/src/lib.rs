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
pub mod inject;
pub mod inventory;
pub mod mcp;
pub mod operation;
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

#[cfg(test)]
mod tests {
    /// The gateway's modules form no cycle (issue 11): what several phases share lives in a
    /// module of its own (`operation`, `inject`, `token_place`, `codes`, `inventory::spec`).
    /// Edges are the `crate::module` paths outside comments; tests count too.
    #[test]
    fn modules_form_no_cycle() {
        use std::collections::{BTreeMap, BTreeSet};
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        for e in std::fs::read_dir(&src).unwrap().chain(std::fs::read_dir(src.join("inventory")).unwrap()) {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
        let name = |p: &std::path::Path| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.parent().unwrap().ends_with("inventory") { format!("inventory::{stem}") } else { stem }
        };
        let known: BTreeSet<String> = files.iter().map(|p| name(p)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in &files {
            let me = name(p);
            let text = std::fs::read_to_string(p).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + 7..];
                    let first: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    let second: String = rest[first.len()..]
                        .strip_prefix("::")
                        .map(|r| r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect())
                        .unwrap_or_default();
                    let target = if known.contains(&format!("{first}::{second}")) { format!("{first}::{second}") } else { first };
                    if known.contains(&target) && target != me && !(me.starts_with("inventory::") && target == "inventory") {
                        edges.entry(me.clone()).or_default().insert(target);
                    }
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, state: &mut BTreeMap<String, u8>, path: &mut Vec<String>) -> Option<Vec<String>> {
            match state.get(n) {
                Some(2) => return None,
                Some(1) => {
                    let at = path.iter().position(|p| p == n).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(n.to_owned());
                    return Some(cycle);
                }
                _ => {}
            }
            state.insert(n.to_owned(), 1);
            path.push(n.to_owned());
            for m in edges.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, edges, state, path) {
                    return Some(c);
                }
            }
            path.pop();
            state.insert(n.to_owned(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for n in &known {
            if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
                panic!("module cycle: {}", cycle.join(" -> "));
            }
        }
        assert!(edges.get("pipeline").is_some_and(|e| e.contains("config")), "the scan found no edges: {edges:?}");
    }
}
