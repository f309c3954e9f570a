//! Where the rules may live: finding `airlock.toml`, and refusing rule files an agent can write.
//!
//! This module owns the default configuration lookup (`--config`/`$AIRLOCK_CONFIG`, else
//! `<state dir>/airlock.toml`, else `/etc/airlock/airlock.toml` — never the current
//! directory, which is the agent's workspace) and the two placement checks for rule files
//! (the configuration and its policy files):
//!
//! * [`refuse_in_writable`]: no rule file inside a path the sandbox makes writable
//!   (`airlock run` passes the workspace and every `--allow-write`);
//! * [`refuse_in_workspace`]: no rule file inside a git work tree (a `.git` in any
//!   ancestor directory of the file; a work tree rooted at `/etc`, as etckeeper keeps, and
//!   a directory the current user cannot write are not workspaces) or directly in a
//!   world-writable directory (like `/tmp` itself; a private subdirectory is fine).
//!
//! Both look at the path as given and at the file it resolves to, so a symlink in a
//! workspace pointing elsewhere is refused too. This module only reads metadata; it never
//! reads, writes or moves a file, and never decides what a rule says.

use std::path::{Component, Path, PathBuf};

use crate::config::Config;

/// The configuration file's name in the state directory (and `/etc/airlock`).
pub const CONFIG_FILE: &str = "airlock.toml";
/// The system-wide configuration, used when neither `--config` nor the state directory has one.
pub const SYSTEM_CONFIG: &str = "/etc/airlock/airlock.toml";

/// Where to put rule files instead, for error messages.
pub const INSTEAD: &str =
    "move it to the state directory (<state dir>/airlock.toml, policies beside it) or /etc/airlock/, or pass --config FILE outside every workspace";

/// Why a configuration could not be found or a rule file is somewhere an agent can write.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// `--config`/`$AIRLOCK_CONFIG` names a file that does not exist.
    #[error("config file {} does not exist", path.display())]
    ConfigMissing {
        /// The path given.
        path: PathBuf,
    },
    /// A rule file is inside a path the agent may write.
    #[error("{} is inside {}, which the agent can write, so the agent could rewrite its own rules; {INSTEAD}", file.display(), writable.display())]
    Writable {
        /// The rule file (configuration or policy).
        file: PathBuf,
        /// The writable path that holds it.
        writable: PathBuf,
    },
    /// A rule file is inside a git work tree (an agent's workspace).
    #[error("{} is inside the git work tree {} (rule: no config or policy file below a directory holding .git), where an agent works and could rewrite its own rules; {INSTEAD}", file.display(), work_tree.display())]
    InGitWorkTree {
        /// The rule file.
        file: PathBuf,
        /// The directory holding `.git`.
        work_tree: PathBuf,
    },
    /// A rule file is directly in a world-writable directory.
    #[error("{} is in the world-writable directory {} (rule: no config or policy file directly in a directory every user can write, such as /tmp; a private subdirectory is fine), so anyone could replace it; {INSTEAD}", file.display(), dir.display())]
    WorldWritable {
        /// The rule file.
        file: PathBuf,
        /// The world-writable directory.
        dir: PathBuf,
    },
}

/// Where the configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--config` or `$AIRLOCK_CONFIG`.
    Explicit,
    /// `<state dir>/airlock.toml`.
    StateDir,
    /// `/etc/airlock/airlock.toml`.
    System,
}

/// The result of the configuration lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The configuration to use, if any, and where it came from.
    pub found: Option<(PathBuf, Source)>,
    /// `./airlock.toml`, when it exists but is ignored (no explicit config was given): the
    /// caller warns that it is not read and where to move it.
    pub ignored: Option<PathBuf>,
}

/// Find the configuration: `explicit` (must exist), else `<state_dir>/airlock.toml`, else
/// [`SYSTEM_CONFIG`]. `cwd` is only looked at to report an ignored `./airlock.toml`.
pub fn locate(explicit: Option<&Path>, state_dir: Option<&Path>, cwd: Option<&Path>) -> Result<Lookup, PlacementError> {
    locate_in(explicit, state_dir, cwd, Path::new(SYSTEM_CONFIG))
}

fn locate_in(explicit: Option<&Path>, state_dir: Option<&Path>, cwd: Option<&Path>, system: &Path) -> Result<Lookup, PlacementError> {
    if let Some(p) = explicit {
        if !p.exists() {
            return Err(PlacementError::ConfigMissing { path: p.to_owned() });
        }
        return Ok(Lookup { found: Some((p.to_owned(), Source::Explicit)), ignored: None });
    }
    let found = state_dir
        .map(|d| d.join(CONFIG_FILE))
        .filter(|p| p.is_file())
        .map(|p| (p, Source::StateDir))
        .or_else(|| system.is_file().then(|| (system.to_owned(), Source::System)));
    let ignored = cwd.map(|c| c.join(CONFIG_FILE)).filter(|p| p.is_file()).filter(|p| match &found {
        Some((f, _)) => !same_file(f, p),
        None => true,
    });
    Ok(Lookup { found, ignored })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

impl Config {
    /// The rule files this configuration consists of: the file itself and every
    /// `[policy] files` entry (relative entries as the policy loader reads them, from the
    /// current directory).
    pub fn rule_files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.path.clone()];
        v.extend(self.policy.files.iter().cloned());
        v
    }
}

/// Refuse any of `files` (a configuration and its policy files) inside any of `writable`
/// (the workspace and every path the sandbox makes writable). The error names the file and
/// where to put it instead.
pub fn refuse_in_writable(files: &[PathBuf], writable: &[PathBuf]) -> Result<(), PlacementError> {
    let writable: Vec<PathBuf> = writable.iter().map(|w| resolved(w)).collect();
    for f in files {
        for form in forms(f) {
            if let Some(w) = writable.iter().find(|w| form.starts_with(w)) {
                return Err(PlacementError::Writable { file: f.clone(), writable: w.clone() });
            }
        }
    }
    Ok(())
}

/// Refuse any of `files` inside a git work tree or directly in a world-writable directory
/// (see the module docs for the exact rule). Used by `airlock serve`, which does not know
/// which directories agents work in.
pub fn refuse_in_workspace(files: &[PathBuf]) -> Result<(), PlacementError> {
    for f in files {
        for form in forms(f) {
            let dir = form.parent().unwrap_or(Path::new("/"));
            let mut dirs = vec![dir.to_owned()];
            if form.is_dir() {
                dirs.push(form.clone());
            }
            for d in &dirs {
                if world_writable(d) {
                    return Err(PlacementError::WorldWritable { file: f.clone(), dir: d.clone() });
                }
            }
            if !writable_by_me(if form.is_dir() { &form } else { dir }) {
                continue;
            }
            if let Some(root) = form.ancestors().skip(1).find(|a| a.join(".git").exists())
                && root != Path::new("/etc")
            {
                return Err(PlacementError::InGitWorkTree { file: f.clone(), work_tree: root.to_owned() });
            }
        }
    }
    Ok(())
}

/// The path as given (absolute, its directory resolved) and the file it resolves to.
fn forms(f: &Path) -> Vec<PathBuf> {
    let abs = absolute(f);
    let mut v = vec![match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => resolved(dir).join(name),
        _ => abs.clone(),
    }];
    if let Ok(c) = std::fs::canonicalize(&abs)
        && !v.contains(&c)
    {
        v.push(c);
    }
    v
}

/// `p` absolute (from the current directory) and without `.`/`..` components.
fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() { p.to_owned() } else { std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(p) };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `p` with symlinks resolved where it exists (else made absolute).
fn resolved(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| absolute(p))
}

fn world_writable(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(dir).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o002 != 0)
}

fn writable_by_me(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn lookup_order_never_the_current_directory() {
        let t = tempfile::tempdir().unwrap();
        let (state, cwd, sys) = (t.path().join("state"), t.path().join("work"), t.path().join("etc.toml"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        std::fs::write(cwd.join(CONFIG_FILE), "").unwrap();
        // Only ./airlock.toml: nothing is used, and it is reported as ignored.
        let l = locate_in(None, Some(&state), Some(&cwd), &sys).unwrap();
        assert_eq!(l, Lookup { found: None, ignored: Some(cwd.join(CONFIG_FILE)) });
        // The system file, then the state directory's, win over it.
        std::fs::write(&sys, "").unwrap();
        assert_eq!(locate_in(None, Some(&state), Some(&cwd), &sys).unwrap().found, Some((sys.clone(), Source::System)));
        std::fs::write(state.join(CONFIG_FILE), "").unwrap();
        let l = locate_in(None, Some(&state), Some(&cwd), &sys).unwrap();
        assert_eq!(l.found, Some((state.join(CONFIG_FILE), Source::StateDir)));
        assert!(l.ignored.is_some());
        // Explicit wins and must exist; nothing is reported as ignored then.
        let e = cwd.join("other.toml");
        assert_eq!(locate_in(Some(&e), Some(&state), Some(&cwd), &sys), Err(PlacementError::ConfigMissing { path: e.clone() }));
        std::fs::write(&e, "").unwrap();
        assert_eq!(locate_in(Some(&e), Some(&state), Some(&cwd), &sys).unwrap(), Lookup { found: Some((e, Source::Explicit)), ignored: None });
        // Run from the state directory itself: its airlock.toml is not "ignored".
        assert_eq!(locate_in(None, Some(&state), Some(&state), &sys).unwrap().ignored, None);
    }

    #[test]
    fn writable_paths_hold_no_rules() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        let inside = ws.join("sub/airlock.toml");
        std::fs::write(&inside, "").unwrap();
        let outside = t.path().join("airlock.toml");
        std::fs::write(&outside, "").unwrap();
        refuse_in_writable(std::slice::from_ref(&outside), std::slice::from_ref(&ws)).unwrap();
        let e = refuse_in_writable(&[outside.clone(), inside.clone()], std::slice::from_ref(&ws)).unwrap_err();
        assert!(matches!(&e, PlacementError::Writable { file, .. } if *file == inside), "{e:?}");
        assert!(e.to_string().contains("state directory") && e.to_string().contains("/etc/airlock"), "{e}");
        // Through `..`, and through a symlink out of (or into) the workspace.
        refuse_in_writable(&[ws.join("sub/../sub/airlock.toml")], std::slice::from_ref(&ws)).unwrap_err();
        let link = ws.join("link.toml");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        refuse_in_writable(&[link], std::slice::from_ref(&ws)).unwrap_err();
        let link_in = t.path().join("in.toml");
        std::os::unix::fs::symlink(&inside, &link_in).unwrap();
        refuse_in_writable(&[link_in], std::slice::from_ref(&ws)).unwrap_err();
        // A policy directory inside a writable path.
        refuse_in_writable(&[outside, ws.join("sub")], &[ws]).unwrap_err();
    }

    #[test]
    fn workspaces_hold_no_rules() {
        let t = tempfile::tempdir().unwrap();
        let private = t.path().join("private");
        std::fs::create_dir_all(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let ok = private.join("airlock.toml");
        std::fs::write(&ok, "").unwrap();
        refuse_in_workspace(std::slice::from_ref(&ok)).unwrap();

        let repo = t.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("conf")).unwrap();
        let in_repo = repo.join("conf/airlock.toml");
        std::fs::write(&in_repo, "").unwrap();
        let e = refuse_in_workspace(&[ok.clone(), in_repo.clone()]).unwrap_err();
        assert_eq!(e, PlacementError::InGitWorkTree { file: in_repo, work_tree: repo.clone() });
        assert!(e.to_string().contains(".git"), "{e}");

        let shared = t.path().join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let f = shared.join("airlock.toml");
        std::fs::write(&f, "").unwrap();
        let e = refuse_in_workspace(std::slice::from_ref(&f)).unwrap_err();
        assert!(matches!(&e, PlacementError::WorldWritable { dir, .. } if *dir == shared), "{e:?}");
        // A private subdirectory of a world-writable one is fine.
        let sub = shared.join("mine");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(sub.join("airlock.toml"), "").unwrap();
        refuse_in_workspace(&[sub.join("airlock.toml")]).unwrap();
        // A world-writable policy directory is refused itself.
        refuse_in_workspace(std::slice::from_ref(&shared)).unwrap_err();
    }
}
