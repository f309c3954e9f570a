//! Built-in upstream presets: the model APIs agents call (`anthropic`, `openai`).
//!
//! This module owns the preset table (base URL, injection, the agent's variables, the
//! declared operations — model calls named `model` so a task can hold "call the model"
//! without holding "write"), name suggestions for typos ("did you mean …", used for presets
//! and grants), and rendering an `[[upstream]]` block for `airlock upstream add`.
//!
//! A preset is only defaults: [`crate::config`] applies it under whatever the
//! `[[upstream]]` block sets itself, and validates the result exactly as a hand-written
//! upstream. This module must never hold or name a secret value (an upstream names a vault
//! secret, nothing more) and never does I/O.

use std::time::Duration;

/// The operation name model calls are declared under (`--grant anthropic:model`).
pub const MODEL_OPERATION: &str = "model";

/// One declared operation of a preset (REST: method + path template below the base URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetOperation {
    /// HTTP method.
    pub method: &'static str,
    /// Path template relative to the base URL.
    pub path: &'static str,
    /// Operation name used in grants (`None`: the default `"METHOD /path"`).
    pub name: Option<&'static str>,
    /// `read`, `write` or `destroy`.
    pub capability: &'static str,
}

/// A built-in upstream preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The preset's name (`preset = "anthropic"`), also the default upstream name.
    pub name: &'static str,
    /// One line for `airlock upstream list` and docs.
    pub description: &'static str,
    /// The real API's base URL.
    pub base_url: &'static str,
    /// The header the credential goes in.
    pub header: &'static str,
    /// Its value template (contains `{secret}` once).
    pub format: &'static str,
    /// The agent's base-URL variable (set to the gateway URL of the upstream).
    pub env_base_url: &'static str,
    /// The agent's key variable (set to the task token).
    pub env_key: &'static str,
    /// Time until the response head arrives (model calls can think for a while).
    pub request_timeout: Duration,
    /// Declared operations.
    pub operations: &'static [PresetOperation],
}

const fn model(path: &'static str) -> PresetOperation {
    PresetOperation { method: "POST", path, name: Some(MODEL_OPERATION), capability: "write" }
}

const fn read(path: &'static str) -> PresetOperation {
    PresetOperation { method: "GET", path, name: None, capability: "read" }
}

/// Every built-in preset.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "anthropic",
        description: "Anthropic API (Claude): model calls are operation `model`",
        base_url: "https://api.anthropic.com",
        header: "x-api-key",
        format: "{secret}",
        env_base_url: "ANTHROPIC_BASE_URL",
        env_key: "ANTHROPIC_API_KEY",
        request_timeout: Duration::from_secs(600),
        operations: &[model("/v1/messages"), model("/v1/messages/count_tokens"), model("/v1/complete"), read("/v1/models"), read("/v1/models/{id}")],
    },
    Preset {
        name: "openai",
        description: "OpenAI API: model calls are operation `model`",
        base_url: "https://api.openai.com/v1",
        header: "Authorization",
        format: "Bearer {secret}",
        env_base_url: "OPENAI_BASE_URL",
        env_key: "OPENAI_API_KEY",
        request_timeout: Duration::from_secs(600),
        operations: &[model("/chat/completions"), model("/responses"), model("/completions"), model("/embeddings"), read("/models"), read("/models/{id}")],
    },
];

/// The preset named `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names of every preset, for error messages.
pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

impl Preset {
    /// The capabilities a grant may name on an upstream made from this preset, beyond
    /// `read`, `write`, `destroy` (the declared operation names, deduplicated).
    pub fn operation_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&str> = self.operations.iter().filter_map(|o| o.name).collect();
        v.dedup();
        v
    }
}

/// The candidate closest to `wanted` by edit distance (optimal string alignment: insert,
/// delete, substitute, swap neighbours), if it is close enough to be a typo
/// (at most a third of the longer name, and at least one edit allowed).
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(wanted, c), c))
        .filter(|(d, c)| *d > 0 && *d <= (wanted.chars().count().max(c.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// What `airlock upstream add` writes: a preset upstream for one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpstream<'a> {
    /// The preset.
    pub preset: &'a Preset,
    /// Route name (default: the preset's name).
    pub name: Option<&'a str>,
    /// The environment it serves.
    pub environment: &'a str,
    /// The vault secret's name (never a value).
    pub secret: &'a str,
}

impl NewUpstream<'_> {
    /// The upstream's route name.
    pub fn name(&self) -> &str {
        self.name.unwrap_or(self.preset.name)
    }

    /// The grant that lets a task call the model through this upstream.
    pub fn model_grant(&self) -> String {
        format!("{}:{MODEL_OPERATION}", self.name())
    }

    /// `text` with this upstream's `[[upstream]]` block appended (the existing text and
    /// comments are kept byte for byte; a blank line separates the block).
    pub fn append_to(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!(
            "# {} — added by `airlock upstream add`; grant model calls with --grant {}\n[[upstream]]\npreset = {}\n",
            self.preset.description,
            self.model_grant(),
            quote(self.preset.name)
        ));
        if self.name.is_some_and(|n| n != self.preset.name) {
            out.push_str(&format!("name = {}\n", quote(self.name())));
        }
        out.push_str(&format!("environment = {}\nsecret = {}\n", quote(self.environment), quote(self.secret)));
        out
    }
}

/// Why `airlock upstream add` cannot add an upstream.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// No built-in preset has this name.
    #[error("unknown preset {name:?}{}: the built-in presets are {}; any other API is a plain [[upstream]] with base_url, inject and [[upstream.operation]] entries (see airlock.example.toml)", .suggestion.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default(), .known.join(", "))]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The closest preset name, if it looks like a typo.
        suggestion: Option<&'static str>,
        /// Every preset name.
        known: Vec<&'static str>,
    },
    /// The configuration already has an upstream of this name.
    #[error("{} already has an upstream named {name:?}; pick another with --name (e.g. --name {name}-{environment})", path.display())]
    Duplicate {
        /// The configuration file.
        path: std::path::PathBuf,
        /// The upstream name.
        name: String,
        /// The environment asked for (for the suggested name).
        environment: String,
    },
    /// The existing file, or the file with the new block, does not validate.
    #[error("{0}")]
    Invalid(#[from] crate::Error),
}

/// The preset named `name`, or an error listing the known ones.
pub fn lookup(name: &str) -> Result<&'static Preset, AddError> {
    find(name).ok_or_else(|| AddError::UnknownPreset { name: name.to_owned(), suggestion: suggest(name, names()), known: names() })
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04X}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_well_formed() {
        for p in PRESETS {
            assert!(p.format.matches("{secret}").count() == 1, "{}", p.name);
            assert!(p.base_url.starts_with("https://"), "{}", p.name);
            assert_eq!(p.operation_names(), vec![MODEL_OPERATION], "{}", p.name);
            assert!(p.operations.iter().any(|o| o.capability == "read"), "{}", p.name);
        }
        assert_eq!(find("anthropic").unwrap().header, "x-api-key");
        assert!(find("anthropc").is_none());
        assert_eq!(names(), vec!["anthropic", "openai"]);
    }

    #[test]
    fn suggestions_only_for_typos() {
        assert_eq!(suggest("anthropc", names()), Some("anthropic"));
        assert_eq!(suggest("reed", ["read", "write", "destroy"]), Some("read"));
        assert_eq!(suggest("opnai", names()), Some("openai"));
        assert_eq!(suggest("gitlab", names()), None);
        assert_eq!(suggest("read", ["read"]), None, "an exact match is not a suggestion");
    }

    #[test]
    fn appended_block_keeps_the_text() {
        let n = NewUpstream { preset: find("anthropic").unwrap(), name: None, environment: "staging", secret: "anthropic-key" };
        let text = "# my rules\n[gateway]\nlisten = \"127.0.0.1:7700\"";
        let out = n.append_to(text);
        assert!(out.starts_with(text), "{out}");
        assert!(out.contains("\n\n# Anthropic"), "{out}");
        assert!(out.ends_with("[[upstream]]\npreset = \"anthropic\"\nenvironment = \"staging\"\nsecret = \"anthropic-key\"\n"), "{out}");
        assert!(!out.contains("name = "), "the default name is not written: {out}");
        let named = NewUpstream { name: Some("claude-stg"), ..n };
        assert!(named.append_to("").starts_with("# Anthropic"));
        assert!(named.append_to("").contains("name = \"claude-stg\"\n"));
        assert_eq!(named.model_grant(), "claude-stg:model");
        assert_eq!(quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
