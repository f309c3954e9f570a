//! Well-known credential locations in a home directory (`--home`).
//!
//! [`HOME_LOCATIONS`] is the one documented table. An entry ending in `/` is a
//! directory scanned recursively; an entry ending in `*` matches every entry of its
//! parent directory with that prefix. Paths are relative to the home directory the
//! caller passes (the CLI uses `$HOME`). Findings are reported under the absolute path
//! with source `home`. Only reads; never follows directory symlinks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::finding::Source;
use crate::sources::files::{FileEntry, walk};
use crate::{Error, ScanOptions, ScanReport, Scanner};

/// One well-known location.
#[derive(Debug, Clone, Copy)]
pub struct HomeLocation {
    /// Relative to the home directory; `/` suffix = directory, `*` suffix = prefix glob.
    pub path: &'static str,
    /// What lives there.
    pub what: &'static str,
}

const fn loc(path: &'static str, what: &'static str) -> HomeLocation {
    HomeLocation { path, what }
}

/// The table of well-known credential locations.
pub const HOME_LOCATIONS: &[HomeLocation] = &[
    // cloud
    loc(".aws/credentials", "AWS access keys per profile"),
    loc(".aws/config", "AWS profiles (may hold keys, SSO and credential_process)"),
    loc(".aws/sso/cache/", "AWS SSO access tokens"),
    loc(".config/gcloud/", "Google Cloud ADC, refresh tokens, service-account keys"),
    loc(".azure/", "Azure CLI token caches and service principal secrets"),
    loc(".kube/config", "Kubernetes cluster tokens and client keys"),
    loc(".docker/config.json", "Docker registry auths"),
    loc(".terraform.d/credentials.tfrc.json", "Terraform Cloud tokens"),
    loc(".vault-token", "HashiCorp Vault token"),
    loc(".config/doctl/config.yaml", "DigitalOcean token"),
    loc(".oci/", "Oracle Cloud API keys"),
    loc(".s3cfg", "s3cmd keys"),
    loc(".boto", "boto credentials"),
    loc(".config/rclone/rclone.conf", "rclone remotes"),
    // scm and package registries
    loc(".netrc", "machine/login/password"),
    loc("_netrc", "machine/login/password"),
    loc(".git-credentials", "git credential store (URLs with tokens)"),
    loc(".config/git/credentials", "git credential store"),
    loc(".config/gh/hosts.yml", "GitHub CLI tokens"),
    loc(".config/hub", "hub tokens"),
    loc(".config/glab-cli/config.yml", "GitLab CLI tokens"),
    loc(".npmrc", "npm auth tokens"),
    loc(".yarnrc.yml", "yarn npmAuthToken"),
    loc(".pypirc", "PyPI upload tokens"),
    loc(".config/pip/pip.conf", "index URLs with credentials"),
    loc(".cargo/credentials.toml", "crates.io token"),
    loc(".cargo/credentials", "crates.io token (old name)"),
    loc(".gem/credentials", "RubyGems API key"),
    loc(".m2/settings.xml", "Maven repository passwords"),
    loc(".gradle/gradle.properties", "Gradle repository credentials"),
    loc(".nuget/NuGet/NuGet.Config", "NuGet API keys"),
    loc(".composer/auth.json", "Composer tokens"),
    // databases
    loc(".pgpass", "PostgreSQL passwords"),
    loc(".my.cnf", "MySQL client password"),
    loc(".mongoshrc.js", "MongoDB shell"),
    loc(".dbshell", "MongoDB shell history"),
    loc(".psql_history", "psql history"),
    loc(".mysql_history", "mysql history"),
    loc(".rediscli_history", "redis-cli history (AUTH)"),
    // keys
    loc(".ssh/", "SSH private keys and configs"),
    loc(".gnupg/private-keys-v1.d/", "GnuPG private keys"),
    loc(".config/age/", "age identities"),
    // shell histories
    loc(".bash_history", "bash history"),
    loc(".zsh_history", "zsh history"),
    loc(".zhistory", "zsh history"),
    loc(".sh_history", "sh history"),
    loc(".history", "shell history"),
    loc(".local/share/fish/fish_history", "fish history"),
    loc(".python_history", "python REPL history"),
    loc(".node_repl_history", "node REPL history"),
    loc(".env", "dotenv in the home directory"),
    // coding agents: state and transcripts, where pasted secrets end up
    loc(".claude/", "Claude Code state, credentials and transcripts"),
    loc(".claude.json", "Claude Code settings (MCP server env)"),
    loc(".codex/", "Codex CLI auth and sessions"),
    loc(".cursor/", "Cursor state and MCP config"),
    loc(".continue/", "Continue config and sessions"),
    loc(".aider*", "aider config, chat and input histories"),
    loc(".config/github-copilot/", "GitHub Copilot tokens"),
    loc(".gemini/", "Gemini CLI OAuth credentials and settings"),
    loc(".codeium/", "Codeium/Windsurf state"),
    loc(".config/opencode/", "opencode config"),
    loc(".local/share/opencode/", "opencode auth and sessions"),
    loc(".config/goose/", "goose config"),
    loc(".cline/", "Cline state"),
    loc(".amp/", "Amp state"),
    loc(".config/amp/", "Amp config"),
];

/// The locations from [`HOME_LOCATIONS`] that exist under `home` (files or
/// directories), in table order, prefix globs expanded (sorted).
#[must_use]
pub fn home_locations(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for l in HOME_LOCATIONS {
        let rel = l.path.trim_end_matches('/');
        if let Some(prefix) = rel.strip_suffix('*') {
            let (dir, stem) = match prefix.rsplit_once('/') {
                Some((d, s)) => (home.join(d), s.to_owned()),
                None => (home.to_path_buf(), prefix.to_owned()),
            };
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
                .map(|e| e.path())
                .collect();
            found.sort();
            out.extend(found);
        } else {
            let p = home.join(rel);
            if std::fs::symlink_metadata(&p).is_ok() {
                out.push(p);
            }
        }
    }
    out.dedup();
    out
}

impl Scanner {
    /// Scan the well-known credential locations under `home`.
    pub fn scan_home(&self, home: &Path, opts: &ScanOptions) -> Result<ScanReport, Error> {
        let start = Instant::now();
        let locations = home_locations(home);
        let (files, unreadable) = if locations.is_empty() { (Vec::new(), 0) } else { walk(&locations)? };
        let files: Vec<FileEntry> = files;
        let mut report = self.scan_files(&files, opts, Source::Home);
        report.stats.skipped_unreadable += unreadable;
        report.stats.elapsed = start.elapsed();
        Ok(report)
    }
}
