//! Diagnostic: how often each built-in keyword occurs in a directory (case-insensitive),
//! and in how many files. `cargo run --release -p airlock-scan --example keyword_stats -- DIR`
fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".to_owned());
    let scanner = airlock_scan::Scanner::builtin().expect("rules");
    let mut kws: Vec<String> = scanner.rules().iter().flat_map(|r| r.keywords.clone()).collect();
    kws.sort();
    kws.dedup();
    let ac = aho_corasick::AhoCorasick::builder().ascii_case_insensitive(true).build(&kws).expect("ac");
    let mut hits = vec![0u64; kws.len()];
    let mut files = vec![0u64; kws.len()];
    let (mut nfiles, mut bytes) = (0u64, 0u64);
    for e in ignore::WalkBuilder::new(&dir).hidden(false).ignore(false).git_ignore(false).build().flatten() {
        if !e.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(b) = std::fs::read(e.path()) else {
            continue;
        };
        if b[..b.len().min(8192)].contains(&0) {
            continue;
        }
        nfiles += 1;
        bytes += b.len() as u64;
        let mut seen = vec![false; kws.len()];
        for m in ac.find_overlapping_iter(&b) {
            let k = m.pattern().as_usize();
            hits[k] += 1;
            if !seen[k] {
                seen[k] = true;
                files[k] += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..kws.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(hits[i]));
    println!("{} keywords, {nfiles} files, {bytes} bytes", kws.len());
    for i in order.into_iter().take(40) {
        let rules: Vec<&str> = scanner.rules().iter().filter(|r| r.keywords.contains(&kws[i])).map(|r| r.id.as_str()).collect();
        println!("{:>9} hits {:>6} files  {:<16} {}", hits[i], files[i], kws[i], rules.join(","));
    }
}
