//! The airlock state directory.
//!
//! Owns where state lives (`$AIRLOCK_HOME`, else `$XDG_DATA_HOME/airlock`, else
//! `~/.local/share/airlock` — never the current directory, where agents work),
//! its layout (database, master key, token signing key, admin credential), and
//! its permissions: the directory is 0700 and owned by the current user, key
//! files are 0600 and created exclusively so an existing key is never replaced.
//!
//! It must never interpret key material (that is the vault's and the token
//! crate's job) and never loosen a permission it finds.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// File names inside the state directory.
pub mod files {
    /// The SQLite database (vault records, tasks, revocations, audit).
    pub const DATABASE: &str = "airlock.db";
    /// The 32-byte vault master key (absent in passphrase mode).
    pub const MASTER_KEY: &str = "master.key";
    /// The Ed25519 private key that signs task tokens.
    pub const TOKEN_KEY: &str = "token.key";
    /// The public half of the token key, for gateways that only verify.
    pub const TOKEN_PUBLIC_KEY: &str = "token.pub";
    /// The admin credential that authorises approvals on the admin API.
    pub const ADMIN_TOKEN: &str = "admin.token";
}

/// Why the state directory cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No state directory could be located: neither `$AIRLOCK_HOME`, `$XDG_DATA_HOME` nor `$HOME` is set.
    #[error("cannot locate the airlock state directory: set AIRLOCK_HOME (or HOME) to an absolute path")]
    NoLocation,
    /// The location given is not an absolute path.
    #[error("the airlock state directory must be an absolute path, got {0:?}")]
    NotAbsolute(PathBuf),
    /// The directory (or a key in it) does not exist yet.
    #[error("airlock is not initialised: {0} does not exist. Run `airlock init` first (or set AIRLOCK_HOME to the right state directory)")]
    NotInitialized(PathBuf),
    /// `init` found existing keys and will not overwrite them.
    #[error(
        "refusing to overwrite existing key {0}: airlock is already initialised here. Remove the state directory yourself if you really mean to start over (this destroys every stored secret)"
    )]
    AlreadyInitialized(PathBuf),
    /// A path is readable or writable by other users.
    #[error("refusing to run: {path} has mode {mode:04o}, which lets other users read it; run `chmod {want:o} {path}`")]
    LoosePermissions {
        /// The offending path.
        path: PathBuf,
        /// Its current permission bits.
        mode: u32,
        /// The mode airlock expects.
        want: u32,
    },
    /// A path is owned by another user.
    #[error("refusing to run: {path} is owned by uid {owner}, not by you (uid {me})")]
    WrongOwner {
        /// The offending path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The current user.
        me: u32,
    },
    /// The state directory path exists but is not a directory, or is a symlink.
    #[error("{0} exists but is not a plain directory")]
    NotADirectory(PathBuf),
    /// An I/O error on a named path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What airlock was doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the state directory location came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `$AIRLOCK_HOME`.
    AirlockHome,
    /// `$XDG_DATA_HOME/airlock`.
    XdgDataHome,
    /// `$HOME/.local/share/airlock`.
    Home,
}

/// A handle on the state directory. Creating one does no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { action, path: path.to_owned(), source }
}

fn nonempty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

impl StateDir {
    /// Locate the state directory from the environment.
    pub fn locate() -> Result<(Self, Origin)> {
        let (root, origin) = if let Some(p) = nonempty_env("AIRLOCK_HOME") {
            (p, Origin::AirlockHome)
        } else if let Some(p) = nonempty_env("XDG_DATA_HOME") {
            (p.join("airlock"), Origin::XdgDataHome)
        } else if let Some(p) = nonempty_env("HOME") {
            (p.join(".local/share/airlock"), Origin::Home)
        } else {
            return Err(Error::NoLocation);
        };
        Ok((Self::at(root)?, origin))
    }

    /// A state directory at an explicit absolute path.
    pub fn at(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_absolute() {
            return Err(Error::NotAbsolute(root));
        }
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a file inside the directory (see [`files`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Create the directory (mode 0700) if needed and check it. Existing
    /// directories are accepted only if they already pass [`StateDir::check`].
    pub fn create(&self) -> Result<()> {
        match fs::symlink_metadata(&self.root) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = self.root.parent() {
                    fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
                }
                fs::DirBuilder::new().mode(0o700).create(&self.root).map_err(io("cannot create", &self.root))?;
            }
            Err(e) => return Err(Error::Io { action: "cannot inspect", path: self.root.clone(), source: e }),
        }
        self.check_dir()
    }

    /// Check that the directory exists, is a real directory owned by the
    /// current user and not accessible to anyone else.
    pub fn check_dir(&self) -> Result<()> {
        let md = match fs::symlink_metadata(&self.root) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotInitialized(self.root.clone())),
            Err(e) => return Err(Error::Io { action: "cannot inspect", path: self.root.clone(), source: e }),
        };
        if !md.file_type().is_dir() {
            return Err(Error::NotADirectory(self.root.clone()));
        }
        check_owner_and_mode(&self.root, &md, 0o700)
    }

    /// Full check used before every command that touches state: the directory,
    /// and every key file that exists in it.
    pub fn check(&self) -> Result<()> {
        self.check_dir()?;
        for name in [files::MASTER_KEY, files::TOKEN_KEY, files::ADMIN_TOKEN, files::DATABASE] {
            let p = self.path(name);
            match fs::symlink_metadata(&p) {
                Ok(md) => check_owner_and_mode(&p, &md, 0o600)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { action: "cannot inspect", path: p, source: e }),
            }
        }
        Ok(())
    }

    /// Every problem [`StateDir::check`] would stop at, for `airlock doctor`.
    pub fn problems(&self) -> Vec<Error> {
        let mut out = Vec::new();
        if let Err(e) = self.check_dir() {
            out.push(e);
            return out;
        }
        for name in [files::MASTER_KEY, files::TOKEN_KEY, files::ADMIN_TOKEN, files::DATABASE] {
            let p = self.path(name);
            if let Ok(md) = fs::symlink_metadata(&p)
                && let Err(e) = check_owner_and_mode(&p, &md, 0o600)
            {
                out.push(e);
            }
        }
        out
    }

    /// Write a new key file (mode 0600). Fails with [`Error::AlreadyInitialized`]
    /// if it exists: keys are never overwritten.
    pub fn write_new_key(&self, name: &str, contents: &[u8]) -> Result<()> {
        let p = self.path(name);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyInitialized(p.clone())
            } else {
                Error::Io { action: "cannot create", path: p.clone(), source: e }
            }
        })?;
        f.write_all(contents).map_err(io("cannot write", &p))?;
        f.sync_all().map_err(io("cannot sync", &p))?;
        Ok(())
    }

    /// Whether a key file exists.
    pub fn has(&self, name: &str) -> bool {
        fs::symlink_metadata(self.path(name)).is_ok()
    }

    /// Read a key file after checking its owner and mode.
    pub fn read_key(&self, name: &str) -> Result<Zeroizing<Vec<u8>>> {
        let p = self.path(name);
        let md = match fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotInitialized(p)),
            Err(e) => return Err(Error::Io { action: "cannot inspect", path: p, source: e }),
        };
        check_owner_and_mode(&p, &md, 0o600)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(md.len() as usize));
        fs::File::open(&p).and_then(|mut f| f.read_to_end(&mut buf)).map_err(io("cannot read", &p))?;
        Ok(buf)
    }

    /// Write a public (non-secret) file, replacing it; mode 0644.
    pub fn write_public(&self, name: &str, contents: &[u8]) -> Result<()> {
        let p = self.path(name);
        fs::write(&p, contents).map_err(io("cannot write", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io("cannot chmod", &p))
    }
}

fn check_owner_and_mode(path: &Path, md: &fs::Metadata, want: u32) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if md.uid() != me {
        return Err(Error::WrongOwner { path: path.to_owned(), owner: md.uid(), me });
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::LoosePermissions { path: path.to_owned(), mode, want });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_0700_and_keys_are_0600_and_never_overwritten() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::at(t.path().join("state")).unwrap();
        assert!(matches!(s.check(), Err(Error::NotInitialized(_))));
        s.create().unwrap();
        assert_eq!(fs::metadata(s.root()).unwrap().permissions().mode() & 0o777, 0o700);
        s.write_new_key(files::MASTER_KEY, b"k1").unwrap();
        assert_eq!(fs::metadata(s.path(files::MASTER_KEY)).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(s.write_new_key(files::MASTER_KEY, b"k2"), Err(Error::AlreadyInitialized(_))));
        assert_eq!(&*s.read_key(files::MASTER_KEY).unwrap(), b"k1");
        s.check().unwrap();
    }

    #[test]
    fn loose_permissions_name_the_path() {
        let t = tempfile::tempdir().unwrap();
        let s = StateDir::at(t.path().join("state")).unwrap();
        s.create().unwrap();
        s.write_new_key(files::TOKEN_KEY, b"k").unwrap();
        fs::set_permissions(s.path(files::TOKEN_KEY), fs::Permissions::from_mode(0o644)).unwrap();
        let err = s.check().unwrap_err();
        assert!(matches!(&err, Error::LoosePermissions { path, .. } if path.ends_with("token.key")), "{err}");
        assert!(err.to_string().contains("chmod 600"));
        fs::set_permissions(s.path(files::TOKEN_KEY), fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(s.root(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(s.check(), Err(Error::LoosePermissions { .. })));
        assert_eq!(s.problems().len(), 1);
    }

    #[test]
    fn relative_paths_are_refused() {
        assert!(matches!(StateDir::at("relative/state"), Err(Error::NotAbsolute(_))));
    }

    #[test]
    fn symlinked_state_dir_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::DirBuilder::new().mode(0o700).create(&real).unwrap();
        std::os::unix::fs::symlink(&real, t.path().join("link")).unwrap();
        let s = StateDir::at(t.path().join("link")).unwrap();
        assert!(matches!(s.check(), Err(Error::NotADirectory(_))));
    }
}
