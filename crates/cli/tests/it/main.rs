//! End-to-end tests of the `airlock` binary in temporary state directories.
#![allow(missing_docs)]

mod agents;
mod broker;
mod demo;
mod run;
mod scan;
mod serve;
mod upstream;
mod ways_out;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temporary airlock installation: a state dir and a scratch workspace.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Self {
        assert_eq!(self.code, code, "wrong exit code\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        assert!(self.stderr.contains(needle) || self.stdout.contains(needle), "missing {needle:?}\nstdout: {}\nstderr: {}", self.stdout, self.stderr);
        self
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn work(&self) -> PathBuf {
        let w = self.dir.path().join("work");
        std::fs::create_dir_all(&w).unwrap();
        w
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_airlock"));
        c.args(args)
            .current_dir(self.work())
            .env("AIRLOCK_HOME", self.home())
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_MASTER_KEY")
            .env_remove("AIRLOCK_PASSPHRASE")
            .env("NO_COLOR", "1");
        c
    }
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.cmd(args), None)
    }
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.run_with(self.cmd(args), Some(stdin))
    }
    pub fn run_with(&self, mut c: Command, stdin: Option<&str>) -> Run {
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
        Run { code: status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&stdout).into(), stderr: String::from_utf8_lossy(&stderr).into() }
    }
    pub fn init(&self) -> &Self {
        self.run(&["init"]).ok();
        self
    }
    /// Every byte under the state directory, for "no plaintext at rest" checks.
    pub fn state_bytes(&self) -> Vec<u8> {
        fn walk(p: &Path, out: &mut Vec<u8>) {
            for e in std::fs::read_dir(p).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.extend(std::fs::read(e.path()).unwrap());
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.home(), &mut v);
        v
    }
}

pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
