//! The agent's own home directory.
//!
//! Agents write to `$HOME` (`~/.claude`, `~/.codex`, `~/.cache`, `~/.npm`), and the user's
//! home is where the credential stores are. This module owns the private home an agent gets
//! instead (`--agent-home DIR`, default `<state dir>/agents/<agent>/home`, kept between runs)
//! and what is put in it on every start: copies of the user's harmless configuration
//! (`.gitconfig` without credential helpers or includes, `.npmrc` without auth lines, editor
//! settings) and of any file under `$HOME` passed with `--allow-read`.
//!
//! It must never copy a credential store or a line that carries authentication, never follow
//! a symlink the agent planted in its home (a copy replaces the link, it never writes through
//! it), and never create the home inside the workspace or the user's home.

use std::path::{Path, PathBuf};

use crate::Error;

/// Files copied from the user's home by default (when they exist), relative to `$HOME`.
pub const DEFAULT_COPIES: &[&str] =
    &[".gitconfig", ".config/git/config", ".config/git/ignore", ".gitignore_global", ".npmrc", ".editorconfig", ".vimrc", ".inputrc", ".tmux.conf"];

/// What was copied into the home, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Populated {
    /// Files copied (relative to the home).
    pub copied: Vec<PathBuf>,
    /// Lines or sections left out, as `file: what` (never the content).
    pub filtered: Vec<String>,
}

/// The default home of `agent` in the state directory `state`.
pub fn default_home(state: &Path, agent: &str) -> PathBuf {
    state.join(crate::sandbox::AGENT_HOMES).join(agent).join("home")
}

/// Create `home` (0700) if needed. Refuses a symlink where the home should be.
pub fn ensure(home: &Path) -> Result<PathBuf, Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    if let Ok(m) = std::fs::symlink_metadata(home)
        && !m.is_dir()
    {
        return Err(Error::Sandbox(format!("agent home {} exists and is not a directory (a symlink?); remove it or pass --agent-home DIR", home.display())));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .map_err(|e| Error::Sandbox(format!("cannot create the agent home {}: {e}", home.display())))?;
    std::fs::canonicalize(home).map_err(|e| Error::Sandbox(format!("agent home {}: {e}", home.display())))
}

/// Keep what configures a tool, drop what authenticates it.
fn filter(rel: &str, text: &str, filtered: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    if rel.ends_with("gitconfig") || rel.ends_with("git/config") {
        // Drop [credential …] and [include]/[includeIf …] sections (included files are not
        // copied, and git fails hard on an unreadable one), and any line with a URL that
        // carries user:password@.
        let mut skipping = false;
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with('[') {
                let name = t.trim_start_matches('[').split([']', ' ', '"']).next().unwrap_or("").to_ascii_lowercase();
                skipping = matches!(name.as_str(), "credential" | "include" | "includeif");
                if skipping {
                    filtered.push(format!("{rel}: [{name}] section"));
                }
            }
            if skipping {
                continue;
            }
            if url_with_password(t) {
                filtered.push(format!("{rel}: a URL with a password"));
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        return out;
    }
    if rel.ends_with(".npmrc") {
        for line in text.lines() {
            let l = line.to_ascii_lowercase();
            if l.contains("_auth")
                || l.contains("_password")
                || l.contains("token")
                || l.contains("username")
                || l.contains("certfile")
                || l.contains("keyfile")
                || url_with_password(&l)
            {
                filtered.push(format!("{rel}: an authentication line"));
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        return out;
    }
    text.to_owned()
}

fn url_with_password(s: &str) -> bool {
    s.find("://").is_some_and(|i| {
        let rest = &s[i + 3..];
        let auth = &rest[..rest.find(['/', ' ', '"']).unwrap_or(rest.len())];
        auth.contains('@') && auth.split('@').next().is_some_and(|u| u.contains(':'))
    })
}

/// Write `bytes` to `path` without following a symlink there: whatever is at `path` (a file
/// or a link the agent left) is replaced.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.is_dir() {
            return Err(std::io::Error::other("a directory is in the way"));
        }
        std::fs::remove_file(path)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)
}

/// Copy the default files and `extra` (files under `user_home`) into `home`. `skip` says
/// whether a file must not be copied (a credential store), with the reason.
pub fn populate(home: &Path, user_home: Option<&Path>, extra: &[PathBuf], skip: &dyn Fn(&Path) -> Option<String>) -> Result<Populated, Error> {
    let mut done = Populated::default();
    let Some(user_home) = user_home else { return Ok(done) };
    let user_home = std::fs::canonicalize(user_home).unwrap_or_else(|_| user_home.to_path_buf());
    let mut rels: Vec<PathBuf> = DEFAULT_COPIES.iter().map(PathBuf::from).collect();
    for e in extra {
        let c = std::fs::canonicalize(e).unwrap_or_else(|_| e.clone());
        if let Ok(rel) = c.strip_prefix(&user_home)
            && c.is_file()
            && !rels.iter().any(|r| r == rel)
        {
            rels.push(rel.to_path_buf());
        }
    }
    for rel in rels {
        let from = user_home.join(&rel);
        let Ok(meta) = std::fs::metadata(&from) else { continue };
        if !meta.is_file() || meta.len() > 1 << 20 {
            continue;
        }
        if let Some(why) = skip(&from) {
            done.filtered.push(format!("{}: not copied ({why})", rel.display()));
            continue;
        }
        let Ok(text) = std::fs::read(&from) else { continue };
        let text = String::from_utf8_lossy(&text);
        let kept = filter(&rel.to_string_lossy(), &text, &mut done.filtered);
        replace(&home.join(&rel), kept.as_bytes()).map_err(|e| Error::Sandbox(format!("cannot copy ~/{} into the agent home: {e}", rel.display())))?;
        done.copied.push(rel);
    }
    Ok(done)
}

/// The variables that point an agent's tools at its home.
pub fn env(home: &Path) -> Vec<(String, String)> {
    let h = home.display().to_string();
    vec![
        ("HOME".into(), h.clone()),
        ("XDG_CONFIG_HOME".into(), format!("{h}/.config")),
        ("XDG_CACHE_HOME".into(), format!("{h}/.cache")),
        ("XDG_DATA_HOME".into(), format!("{h}/.local/share")),
        ("XDG_STATE_HOME".into(), format!("{h}/.local/state")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitconfig_keeps_identity_and_drops_credentials_and_includes() {
        let mut f = Vec::new();
        let text = "[user]\n\tname = Dev\n\temail = dev@example.com\n[credential]\n\thelper = store\n[include]\n\tpath = ~/.gitconfig.local\n[url \"https://me:pw@git.example.com/\"]\n\tinsteadOf = https://git.example.com/\n[core]\n\teditor = vim\n";
        let out = filter(".gitconfig", text, &mut f);
        assert!(out.contains("name = Dev") && out.contains("editor = vim"), "{out}");
        assert!(!out.contains("helper") && !out.contains("gitconfig.local") && !out.contains("me:pw"), "{out}");
        assert_eq!(f.len(), 3, "{f:?}");
    }

    #[test]
    fn npmrc_drops_auth_lines() {
        let mut f = Vec::new();
        let out = filter(".npmrc", "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=npm_abc\nsave-exact=true\n", &mut f);
        assert_eq!(out, "registry=https://registry.npmjs.org/\nsave-exact=true\n");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn populate_replaces_a_planted_symlink_instead_of_writing_through_it() {
        let d = tempfile::tempdir().unwrap();
        let user = d.path().join("user");
        let home = d.path().join("agent-home");
        std::fs::create_dir_all(&user).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(user.join(".gitconfig"), "[user]\n\tname = Dev\n").unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        std::os::unix::fs::symlink(&victim, home.join(".gitconfig")).unwrap();
        let p = populate(&home, Some(&user), &[], &|_| None).unwrap();
        assert_eq!(p.copied, vec![PathBuf::from(".gitconfig")]);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!std::fs::symlink_metadata(home.join(".gitconfig")).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(home.join(".gitconfig")).unwrap().contains("Dev"));
    }

    #[test]
    fn extra_files_under_home_are_copied_and_skipped_ones_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let user = std::fs::canonicalize(d.path()).unwrap().join("user");
        let home = d.path().join("h");
        std::fs::create_dir_all(user.join(".config/tool")).unwrap();
        std::fs::write(user.join(".config/tool/settings.json"), "{}").unwrap();
        std::fs::write(user.join(".npmrc"), "x=1\n").unwrap();
        let p =
            populate(&home, Some(&user), &[user.join(".config/tool/settings.json")], &|p| p.ends_with(".npmrc").then(|| "credential store".into())).unwrap();
        assert_eq!(p.copied, vec![PathBuf::from(".config/tool/settings.json")]);
        assert!(p.filtered.iter().any(|f| f.contains(".npmrc: not copied")), "{:?}", p.filtered);
    }

    #[test]
    fn ensure_refuses_a_symlinked_home() {
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", d.path().join("h")).unwrap();
        assert!(ensure(&d.path().join("h")).is_err());
        let ok = ensure(&d.path().join("a/b/home")).unwrap();
        assert!(ok.is_dir());
    }
}
