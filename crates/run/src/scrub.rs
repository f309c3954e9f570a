//! The scrubbed environment an agent starts with.
//!
//! This module owns the rules that decide which inherited environment variables an
//! agent may see: a variable is dropped when its *name* looks like a credential
//! (`*_TOKEN`, `*_SECRET`, `*_KEY`, `AWS_*`, …) or when a detector flags its *value*.
//! `--keep-env NAME` keeps one deliberately.
//!
//! It must never print, log or return a value it dropped: [`Removed`] carries the
//! variable name and the reason only.

use std::ffi::{OsStr, OsString};

/// Why a variable was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The name matches a credential pattern (the pattern is given, e.g. `*_TOKEN`).
    Name(&'static str),
    /// A detector flagged the value (the detector id is given, never the value).
    Value(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Name(p) => write!(f, "name matches {p}"),
            Reason::Value(d) => write!(f, "value flagged by detector {d}"),
        }
    }
}

/// One dropped variable: its name and why. Never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Variable name (lossy UTF-8 for display).
    pub name: String,
    /// Why it was dropped.
    pub reason: Reason,
}

/// The outcome of scrubbing an environment.
#[derive(Default)]
pub struct Scrubbed {
    /// Variables passed on to the agent, in input order.
    pub kept: Vec<(OsString, OsString)>,
    /// Variables dropped (names and reasons only), in input order.
    pub removed: Vec<Removed>,
    /// Variables that matched a rule but were kept because of `--keep-env`
    /// (name and the rule they would have tripped).
    pub kept_deliberately: Vec<Removed>,
}

impl std::fmt::Debug for Scrubbed {
    // Hand-written so that a stray `{:?}` can never print a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubbed")
            .field("kept", &self.kept.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("removed", &self.removed)
            .field("kept_deliberately", &self.kept_deliberately)
            .finish()
    }
}

/// Whole names that are credentials or point at a credential store.
const EXACT: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "SSH_AUTH_SOCK",
    "SSH_ASKPASS",
    "GIT_ASKPASS",
    "SUDO_ASKPASS",
    "GPG_AGENT_INFO",
    "KUBECONFIG",
    "NETRC",
    "DOCKER_AUTH_CONFIG",
    "DATABASE_URL",
    "PGPASSFILE",
    "MYSQL_PWD",
    "PGPASSWORD",
    // Ways to reach a daemon that holds credentials: Docker/Podman sockets, the D-Bus
    // session bus (secret service, keyrings), the per-user runtime dir (agent sockets),
    // a Kerberos ticket cache, a GnuPG home.
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CERT_PATH",
    "CONTAINER_HOST",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
    "KRB5CCNAME",
    "SSH_AGENT_PID",
    "GNUPGHOME",
];

/// Name prefixes whose whole family is dropped.
const PREFIXES: &[(&str, &str)] = &[("AWS_", "AWS_*"), ("AIRLOCK_", "AIRLOCK_*")];

/// `_`-separated name segments that mark a credential wherever they appear.
const ANY_SEGMENT: &[(&str, &str)] = &[
    ("TOKEN", "*_TOKEN*"),
    ("TOKENS", "*_TOKEN*"),
    ("SECRET", "*_SECRET*"),
    ("SECRETS", "*_SECRET*"),
    ("PASSWORD", "*_PASSWORD*"),
    ("PASSWD", "*_PASSWORD*"),
    ("PASSPHRASE", "*_PASSWORD*"),
    ("CREDENTIALS", "*_CREDENTIALS*"),
    ("CREDENTIAL", "*_CREDENTIALS*"),
    ("CREDS", "*_CREDENTIALS*"),
    ("APIKEY", "*_API_KEY"),
    ("PRIVATE", "*_PRIVATE_*"),
    ("COOKIE", "*_COOKIE*"),
];

/// Final segments that mark a credential (`OPENAI_API_KEY`, `DB_PASS`, `SENTRY_DSN`).
const LAST_SEGMENT: &[(&str, &str)] = &[("KEY", "*_KEY"), ("KEYS", "*_KEY"), ("PASS", "*_PASS"), ("PWD", "*_PWD"), ("DSN", "*_DSN"), ("AUTH", "*_AUTH")];

/// Names that would match a rule but are ordinary shell state.
const NEVER: &[&str] = &["PWD", "OLDPWD"];

/// The credential pattern `name` matches, if any (case-insensitive).
pub fn credential_name(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if NEVER.contains(&upper.as_str()) {
        return None;
    }
    if let Some(e) = EXACT.iter().find(|e| **e == upper) {
        return Some(e);
    }
    if let Some((_, p)) = PREFIXES.iter().find(|(pre, _)| upper.starts_with(pre)) {
        return Some(p);
    }
    let segments: Vec<&str> = upper.split(['_', '-', '.']).filter(|s| !s.is_empty()).collect();
    if let Some((_, p)) = segments.iter().find_map(|s| ANY_SEGMENT.iter().find(|(seg, _)| seg == s)) {
        return Some(p);
    }
    // `KEY` alone (e.g. `KEY=…`) or as the last segment of a longer name.
    if let Some(last) = segments.last()
        && let Some((_, p)) = LAST_SEGMENT.iter().find(|(seg, _)| seg == last)
    {
        return Some(p);
    }
    None
}

/// Scrub `vars`.
///
/// * `flag_value(name, value)` returns the id of a detector that flags the value, if any.
/// * `keep` lists names to keep even if they match (exact, case-sensitive).
///
/// Variables whose name or value is not valid UTF-8 are checked on their lossy form.
pub fn scrub<I, F>(vars: I, keep: &[String], mut flag_value: F) -> Scrubbed
where
    I: IntoIterator<Item = (OsString, OsString)>,
    F: FnMut(&str, &OsStr) -> Option<String>,
{
    let mut out = Scrubbed::default();
    for (k, v) in vars {
        let name = k.to_string_lossy().into_owned();
        let reason = match credential_name(&name) {
            Some(p) => Some(Reason::Name(p)),
            None => flag_value(&name, &v).map(Reason::Value),
        };
        match reason {
            None => out.kept.push((k, v)),
            Some(reason) if keep.contains(&name) => {
                out.kept_deliberately.push(Removed { name, reason });
                out.kept.push((k, v));
            }
            Some(reason) => out.removed.push(Removed { name, reason }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn credential_names_are_recognised() {
        for n in [
            "GITHUB_TOKEN",
            "NPM_TOKEN",
            "VAULT_TOKEN",
            "OPENAI_API_KEY",
            "ANTHROPIC_API_KEY",
            "STRIPE_SECRET",
            "SECRET_KEY_BASE",
            "AZURE_CLIENT_SECRET",
            "DB_PASSWORD",
            "MYSQL_PWD",
            "PGPASSWORD",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AWS_PROFILE",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AIRLOCK_MASTER_KEY",
            "AIRLOCK_PASSPHRASE",
            "AIRLOCK_HOME",
            "AIRLOCK_DATABASE_URL",
            "SSH_AUTH_SOCK",
            "DOCKER_HOST",
            "DBUS_SESSION_BUS_ADDRESS",
            "XDG_RUNTIME_DIR",
            "KRB5CCNAME",
            "KUBECONFIG",
            "github_token",
            "my-service.apikey",
            "KEY",
            "SENTRY_DSN",
            "DATABASE_URL",
            "SLACK_BOT_TOKENS",
            "GPG_PRIVATE_KEY_FILE",
        ] {
            assert!(credential_name(n).is_some(), "{n} should be treated as a credential");
        }
    }

    #[test]
    fn ordinary_names_are_kept() {
        for n in [
            "PATH",
            "HOME",
            "USER",
            "LANG",
            "LC_ALL",
            "TERM",
            "SHELL",
            "PWD",
            "OLDPWD",
            "EDITOR",
            "TMPDIR",
            "KEYBOARD_LAYOUT",
            "KEY_VAULT_NAME",
            "TOKENIZERS_PARALLELISM",
            "PASSAGE",
            "XDG_DATA_HOME",
            "CARGO_HOME",
            "RUST_LOG",
            "MONKEY",
            "HOTKEY_MODE",
            "SECRETARY",
        ] {
            assert_eq!(credential_name(n), None, "{n} should be kept");
        }
    }

    #[test]
    fn scrub_drops_by_name_and_value_and_keeps_the_rest() {
        let s = scrub(vars(&[("PATH", "/usr/bin"), ("GITHUB_TOKEN", "ghp_x"), ("NOTES", "AKIAFAKEVALUE"), ("LANG", "C")]), &[], |_, v| {
            (v == "AKIAFAKEVALUE").then(|| "aws-access-key-id".to_owned())
        });
        let kept: Vec<_> = s.kept.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(kept, ["PATH", "LANG"]);
        assert_eq!(s.removed.len(), 2);
        assert_eq!(s.removed[0], Removed { name: "GITHUB_TOKEN".into(), reason: Reason::Name("GITHUB_TOKEN") });
        assert_eq!(s.removed[1], Removed { name: "NOTES".into(), reason: Reason::Value("aws-access-key-id".into()) });
        assert!(s.kept_deliberately.is_empty());
    }

    #[test]
    fn keep_env_keeps_exactly_the_named_variable() {
        let s = scrub(vars(&[("NPM_TOKEN", "a"), ("GH_TOKEN", "b")]), &["NPM_TOKEN".into(), "npm_token".into()], |_, _| None);
        assert_eq!(s.kept.len(), 1);
        assert_eq!(s.kept[0].0, "NPM_TOKEN");
        assert_eq!(s.kept_deliberately[0].name, "NPM_TOKEN");
        assert_eq!(s.removed[0].name, "GH_TOKEN");
    }

    #[test]
    fn value_check_sees_values_of_ordinary_names_only_once() {
        let mut seen = Vec::new();
        scrub(vars(&[("GITHUB_TOKEN", "x"), ("FOO", "y")]), &[], |n, _| {
            seen.push(n.to_owned());
            None
        });
        // Name-matched variables are dropped without their value being inspected.
        assert_eq!(seen, ["FOO"]);
    }

    #[test]
    fn debug_never_shows_values() {
        let s = scrub(vars(&[("FOO", "hunter2-value"), ("X_TOKEN", "tok-value")]), &[], |_, _| None);
        let d = format!("{s:?}");
        assert!(!d.contains("hunter2") && !d.contains("tok-value"), "{d}");
    }
}
