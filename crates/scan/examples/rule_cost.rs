//! Diagnostic: per-rule scanning cost over a directory loaded into memory.
//! `cargo run --release -p airlock-scan --example rule_cost -- DIR [MAX_MB]`
//! Prints the whole rule set's single-threaded throughput, then the 25 most expensive
//! rules (each scanned alone, prefilter included) with their finding counts.

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".to_owned());
    let max_mb: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(64);
    let mut bufs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    for e in ignore::WalkBuilder::new(&dir).hidden(false).ignore(false).git_ignore(false).build().flatten() {
        if !e.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(b) = std::fs::read(e.path()) else {
            continue;
        };
        if b.len() > 10 << 20 || b[..b.len().min(8192)].contains(&0) {
            continue;
        }
        total += b.len();
        bufs.push((e.path().display().to_string(), b));
        if total > max_mb << 20 {
            break;
        }
    }
    let scanner = airlock_scan::Scanner::builtin().expect("rules");
    let mb = total as f64 / 1e6;
    let t = Instant::now();
    let n: usize = bufs.iter().map(|(p, b)| scanner.scan_bytes(p, b).len()).sum();
    let el = t.elapsed().as_secs_f64();
    println!("all {} rules: {mb:.1} MB in {el:.3}s = {:.0} MB/s single thread, {n} findings", scanner.rules().len(), mb / el);
    let mut costs = Vec::new();
    for i in 0..scanner.rules().len() {
        let s = scanner.single_rule(i).expect("rule");
        let t = Instant::now();
        let n: usize = bufs.iter().map(|(p, b)| s.scan_bytes(p, b).len()).sum();
        costs.push((t.elapsed().as_secs_f64(), i, n));
    }
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let sum: f64 = costs.iter().map(|c| c.0).sum();
    println!("sum of single-rule times {sum:.3}s");
    for (t, i, n) in costs.iter().take(25) {
        println!("{t:8.3}s {:>5} findings  {}", n, scanner.rules()[*i].id);
    }
}
