//! Process environments: the current process's, or another's via `/proc/PID/environ`.
//!
//! Each variable is scanned on its own as the one-line text `NAME=value`, reported
//! under the pseudo-path `<label>:NAME` (e.g. `env:GITHUB_TOKEN`, `env[4242]:AWS_…`)
//! so a caller knows which variable to scrub. Values are held in zeroizing buffers.

use std::time::Instant;

use zeroize::Zeroizing;

use crate::finding::Source;
use crate::{Error, ScanReport, Scanner, sort_findings};

/// One environment variable; the value is zeroized on drop.
pub type EnvVar = (String, Zeroizing<String>);

/// The current process environment, sorted by name (lossy UTF-8).
#[must_use]
pub fn process_env() -> Vec<EnvVar> {
    let mut v: Vec<EnvVar> =
        std::env::vars_os().map(|(k, val)| (k.to_string_lossy().into_owned(), Zeroizing::new(val.to_string_lossy().into_owned()))).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The environment of process `pid`, read from `/proc/PID/environ`, sorted by name.
pub fn environ_of_pid(pid: u32) -> Result<Vec<EnvVar>, Error> {
    let path = format!("/proc/{pid}/environ");
    let raw = Zeroizing::new(std::fs::read(&path).map_err(|e| Error::Io {
        path,
        action: "read the environment of the process (does it exist, and is it yours?) at",
        source: e,
    })?);
    let mut v: Vec<EnvVar> = raw
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, val) = match memchr::memchr(b'=', s) {
                Some(i) => (&s[..i], &s[i + 1..]),
                None => (s, &b""[..]),
            };
            (String::from_utf8_lossy(k).into_owned(), Zeroizing::new(String::from_utf8_lossy(val).into_owned()))
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

impl Scanner {
    /// Scan environment variables given as (name, value) pairs; findings are reported
    /// at `<label>:NAME`, line 1, with source `env`.
    #[must_use]
    pub fn scan_env<K: AsRef<str>, V: AsRef<str>>(&self, label: &str, vars: &[(K, V)]) -> ScanReport {
        let start = Instant::now();
        let mut report = ScanReport::default();
        let mut line = Zeroizing::new(Vec::<u8>::new());
        for (k, v) in vars {
            line.clear();
            line.extend_from_slice(k.as_ref().as_bytes());
            line.push(b'=');
            line.extend_from_slice(v.as_ref().as_bytes());
            let path = format!("{label}:{}", k.as_ref());
            report.stats.files_scanned += 1;
            report.stats.bytes_scanned += line.len() as u64;
            report.findings.extend(self.scan_data(&path, &line, Source::Env));
        }
        sort_findings(&mut report.findings);
        report.stats.elapsed = start.elapsed();
        report
    }
}
