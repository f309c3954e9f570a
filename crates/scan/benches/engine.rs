//! Engine benchmarks: `cargo bench -p airlock-scan --bench engine`.
//!
//! * `compile/builtin` — parsing and compiling the built-in rule set (paid once per
//!   `airlock scan`, and by `airlock run`'s preflight).
//! * `scan_bytes/clean_source` — a real Rust source file with no secrets (this crate's
//!   engine module): the common case, where the keyword prefilter should reject most rules.
//! * `scan_bytes/secrets_env` — a `.env`-style file made of every rule's positive examples
//!   (hundreds of findings): the worst case for validation and finding construction.
//! * `scan_bytes/mixed_1mib` — 1 MiB of source code with a secret line every ~4 KiB.
//!
//! The inputs are built from files in this crate and the rules' own synthetic examples,
//! so the benchmark needs no corpus and is deterministic.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented public fn

use std::hint::black_box;

use airlock_scan::Scanner;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CLEAN: &str = include_str!("../src/engine.rs");
const MORE_SOURCE: &[&str] = &[
    include_str!("../src/rules.rs"),
    include_str!("../src/checksum.rs"),
    include_str!("../src/report.rs"),
    include_str!("../src/finding.rs"),
    include_str!("../src/lib.rs"),
];

fn secrets_env(scanner: &Scanner) -> String {
    let mut out = String::new();
    for r in scanner.rules() {
        if r.paths_pattern.is_some() {
            continue; // path-only rules need their path; covered by tests
        }
        for e in &r.examples_true {
            out.push_str(e);
            out.push('\n');
        }
    }
    out
}

fn mixed(scanner: &Scanner, size: usize) -> String {
    let secrets = secrets_env(scanner);
    let secret_lines: Vec<&str> = secrets.lines().collect();
    let source: Vec<&str> = std::iter::once(CLEAN).chain(MORE_SOURCE.iter().copied()).flat_map(str::lines).collect();
    let mut out = String::with_capacity(size + 4096);
    let (mut i, mut j, mut since) = (0usize, 0usize, 0usize);
    while out.len() < size {
        let line = source[i % source.len()];
        out.push_str(line);
        out.push('\n');
        since += line.len() + 1;
        i += 1;
        if since >= 4096 {
            out.push_str(secret_lines[j % secret_lines.len()]);
            out.push('\n');
            j += 7; // walk the rule set, not just its first file
            since = 0;
        }
    }
    out.truncate(size);
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    g.bench_function("builtin", |b| b.iter(|| black_box(Scanner::builtin().expect("builtin rules"))));
    g.finish();

    let scanner = Scanner::builtin().expect("builtin rules");
    let env = secrets_env(&scanner);
    let mixed = mixed(&scanner, 1 << 20);
    let mut g = c.benchmark_group("scan_bytes");
    for (name, path, data) in
        [("clean_source", "src/engine.rs", CLEAN.as_bytes()), ("secrets_env", ".env", env.as_bytes()), ("mixed_1mib", "src/mixed.rs", mixed.as_bytes())]
    {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(scanner.scan_bytes(path, black_box(data)))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
