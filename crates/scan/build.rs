//! Embed every `rules/*.toml` file (sorted by name) into the binary.
//!
//! Generates `$OUT_DIR/builtin_rules.rs` holding `BUILTIN_RULE_FILES: &[(&str, &str)]`
//! (file name, contents). Adding a rule file needs no code change.
//!
//! Also generates `$OUT_DIR/engine_hash.rs` holding `ENGINE_SOURCE_HASH`, a hash of every
//! `src/**/*.rs` file: part of the clean-cache fingerprint (`cache.rs`), so a cache
//! written by one build of the matcher is never trusted by a different one.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("rules");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut out =
        String::from("/// Built-in rule files: (file name, TOML text), sorted by name.\npub(crate) static BUILTIN_RULE_FILES: &[(&str, &str)] = &[\n");
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().expect("file name").to_string_lossy().into_owned();
        writeln!(out, "    ({name:?}, include_str!({:?})),", f.display().to_string()).expect("write");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin_rules.rs");
    std::fs::write(dest, out).expect("write builtin_rules.rs");
    engine_hash();
}

/// FNV-1a over the sorted relative paths and contents of `src/**/*.rs`. Not a security
/// boundary: it only has to change when the engine's code does.
fn engine_hash() {
    let src = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR")).join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&src).unwrap_or(f).to_string_lossy().into_owned();
        let body = std::fs::read(f).expect("read engine source");
        for b in rel.bytes().chain([0]).chain(body).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let out = format!("/// Hash of the engine's sources (`src/**/*.rs`) at build time.\npub(crate) const ENGINE_SOURCE_HASH: u64 = {h:#018x};\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("engine_hash.rs");
    std::fs::write(dest, out).expect("write engine_hash.rs");
}
