//! Finding what the agent's program needs to run: its installation root.
//!
//! A real agent is rarely one file in `/usr/bin`: `claude` is a symlink into
//! `~/.nvm/versions/node/vX/lib/node_modules/…/cli.js`, whose `#!/usr/bin/env node` is
//! `~/.nvm/versions/node/vX/bin/node`; `aider` is a script in a venv whose interpreter is a
//! symlink to a pyenv build. This module owns following that chain — `PATH` lookup,
//! symlinks, shebangs (including `env`), venvs (`pyvenv.cfg`'s `home`) — and naming the
//! smallest directories that make it run: a `bin` directory's prefix, a `node_modules`
//! tree's prefix, a venv, each with the reason to show the user.
//!
//! It only reads: it never grants anything itself, and the sandbox plan still refuses a
//! root that would expose a protected path (a symlink into `~/.ssh` stays refused).

use std::ffi::OsStr;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The program and what it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The program as found on `PATH` (not canonicalised), if it was found.
    pub program: Option<PathBuf>,
    /// Directories to open read + execute, each with why.
    pub roots: Vec<(PathBuf, String)>,
}

/// Directories that are granted anyway (system paths): nothing under them is reported.
fn is_system(p: &Path, system: &[PathBuf]) -> bool {
    system.iter().any(|s| p.starts_with(s))
}

/// Look `name` up the way `execvp` does: as a path if it contains `/`, else on `path_var`.
pub fn which(name: &OsStr, path_var: Option<&OsStr>, cwd: &Path) -> Option<PathBuf> {
    let n = Path::new(name);
    if name.as_encoded_bytes().contains(&b'/') {
        let p = if n.is_absolute() { n.to_path_buf() } else { cwd.join(n) };
        return p.exists().then_some(p);
    }
    std::env::split_paths(path_var?).map(|d| if d.is_absolute() { d } else { cwd.join(d) }).map(|d| d.join(n)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The interpreter named by a `#!` line, and (for `env`) the program it runs.
fn shebang(p: &Path) -> Option<(PathBuf, Option<String>)> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut buf = [0u8; 256];
    let n = f.read(&mut buf).ok()?;
    let line = buf[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let interp = PathBuf::from(parts.next()?);
    let env_target = if interp.file_name() == Some(OsStr::new("env")) { parts.find(|a| !a.starts_with('-')).map(str::to_owned) } else { None };
    Some((interp, env_target))
}

/// The smallest directory that holds an installed program: the prefix of a `bin`/`sbin`
/// directory or of a `lib/node_modules` / `node_modules` tree, else the file's directory.
fn install_root(file: &Path, avoid: &[PathBuf]) -> (PathBuf, &'static str) {
    let too_wide = |root: &Path| avoid.iter().any(|a| a.starts_with(root));
    let comps: Vec<_> = file.ancestors().collect();
    // A node package: <prefix>/lib/node_modules/<pkg>/… or <prefix>/node_modules/<pkg>/…
    if let Some(nm) = comps.iter().rev().find(|a| a.file_name() == Some(OsStr::new("node_modules"))) {
        let parent = nm.parent().unwrap_or(nm);
        let prefix = if parent.file_name() == Some(OsStr::new("lib")) { parent.parent().unwrap_or(parent) } else { parent };
        if !too_wide(prefix) {
            return (prefix.to_path_buf(), "node installation");
        }
        let pkg = file.strip_prefix(nm).ok().and_then(|r| r.components().next()).map(|c| nm.join(c));
        if let Some(pkg) = pkg.filter(|p| !too_wide(p)) {
            return (pkg, "node package");
        }
    }
    let dir = file.parent().unwrap_or(file);
    if matches!(dir.file_name().and_then(OsStr::to_str), Some("bin" | "sbin")) {
        let prefix = dir.parent().unwrap_or(dir);
        // A venv: the prefix holds pyvenv.cfg.
        if prefix.join("pyvenv.cfg").is_file() {
            return (prefix.to_path_buf(), "Python virtual environment");
        }
        if !too_wide(prefix) {
            return (prefix.to_path_buf(), "installation prefix");
        }
        return (dir.to_path_buf(), "program directory");
    }
    (dir.to_path_buf(), "program directory")
}

/// A venv's base interpreter installation (`home = …/bin` in `pyvenv.cfg`).
fn venv_base(prefix: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(prefix.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "home").then(|| PathBuf::from(v.trim()))
    })?;
    Some(if home.file_name() == Some(OsStr::new("bin")) { home.parent()?.to_path_buf() } else { home })
}

/// Resolve `program` (as the agent would run it, with the agent's `PATH`) and name every
/// directory outside `system` it needs to run.
///
/// `avoid`: paths no root may contain (credential stores, the state directory); a prefix
/// that would is narrowed to the program's own directory (`~/.local/bin`, not `~/.local`).
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>, cwd: &Path, system: &[PathBuf], avoid: &[PathBuf]) -> Resolved {
    let mut out = Resolved { program: which(program, path_var, cwd), roots: Vec::new() };
    let Some(start) = out.program.clone() else { return out };
    let mut queue = vec![(start, Path::new(program).display().to_string())];
    let mut seen = 0;
    while let Some((p, via)) = queue.pop() {
        seen += 1;
        if seen > 16 {
            break; // a loop of shebangs or links: what was found so far stands
        }
        // Every hop of a symlink chain: the link's own directory must be traversable too.
        let mut hop = p.clone();
        let mut files = vec![p.clone()];
        for _ in 0..16 {
            let Ok(t) = std::fs::read_link(&hop) else { break };
            hop = if t.is_absolute() { t } else { hop.parent().unwrap_or(Path::new("/")).join(t) };
            files.push(hop.clone());
        }
        if let Ok(c) = std::fs::canonicalize(&p) {
            files.push(c);
        }
        for f in &files {
            let f = std::fs::canonicalize(f.parent().unwrap_or(f)).map(|d| d.join(f.file_name().unwrap_or_default())).unwrap_or_else(|_| f.clone());
            if is_system(&f, system) {
                continue;
            }
            let (root, kind) = install_root(&f, avoid);
            if !out.roots.iter().any(|(r, _)| root.starts_with(r)) {
                out.roots.retain(|(r, _)| !r.starts_with(&root));
                out.roots.push((root.clone(), format!("{kind} of {via}")));
            }
            if let Some(base) = venv_base(&root)
                && !is_system(&base, system)
                && !out.roots.iter().any(|(r, _)| base.starts_with(r))
            {
                out.roots.push((base, format!("the Python installation the venv of {via} is built on")));
            }
        }
        if let Some(real) = files.last()
            && let Some((interp, env_target)) = shebang(real)
        {
            match env_target {
                Some(t) => {
                    if let Some(found) = which(OsStr::new(&t), path_var, cwd) {
                        queue.push((found, format!("{t} (the interpreter of {via})")));
                    }
                }
                None => queue.push((interp.clone(), format!("{} (the interpreter of {via})", interp.display()))),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    fn exe(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn nvm_style_agent_resolves_to_the_node_prefix() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let v = root.join("home/.nvm/versions/node/v20.1.0");
        exe(&v.join("bin/node"), "\x7fELF");
        exe(&v.join("lib/node_modules/agent/cli.js"), "#!/usr/bin/env node\nconsole.log(1)\n");
        symlink("../lib/node_modules/agent/cli.js", v.join("bin/agent")).unwrap();
        let path = std::env::join_paths([v.join("bin"), PathBuf::from("/usr/bin")]).unwrap();
        let r = resolve(OsStr::new("agent"), Some(&path), &root, &[PathBuf::from("/usr")], &[root.join("home/.ssh")]);
        assert_eq!(r.program, Some(v.join("bin/agent")));
        assert_eq!(r.roots.len(), 1, "{:?}", r.roots);
        assert_eq!(r.roots[0].0, v);
    }

    #[test]
    fn venv_script_resolves_to_the_venv_and_its_base_python() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let base = root.join("home/.pyenv/versions/3.11.7");
        exe(&base.join("bin/python3.11"), "\x7fELF");
        let venv = root.join("home/proj-venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("pyvenv.cfg"), format!("home = {}\n", base.join("bin").display())).unwrap();
        symlink(base.join("bin/python3.11"), venv.join("bin/python")).unwrap();
        exe(&venv.join("bin/aider"), &format!("#!{}\nimport aider\n", venv.join("bin/python").display()));
        let r = resolve(venv.join("bin/aider").as_os_str(), None, &root, &[PathBuf::from("/usr")], &[]);
        let roots: Vec<&PathBuf> = r.roots.iter().map(|(p, _)| p).collect();
        assert!(roots.contains(&&venv), "{roots:?}");
        assert!(roots.contains(&&base), "{roots:?}");
        assert!(r.roots.iter().any(|(_, why)| why.contains("venv")), "{:?}", r.roots);
    }

    #[test]
    fn system_programs_need_nothing_and_missing_ones_are_none() {
        let r = resolve(OsStr::new("sh"), Some(OsStr::new("/usr/bin:/bin")), Path::new("/"), &[PathBuf::from("/usr"), PathBuf::from("/bin")], &[]);
        assert!(r.program.is_some());
        assert!(r.roots.is_empty(), "{:?}", r.roots);
        let r = resolve(OsStr::new("no-such-program-xyz"), Some(OsStr::new("/usr/bin")), Path::new("/"), &[], &[]);
        assert_eq!(r, Resolved::default());
    }

    #[test]
    fn a_prefix_holding_a_credential_store_narrows_to_the_bin_directory() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        exe(&root.join("home/.local/bin/tool"), "\x7fELF");
        std::fs::create_dir_all(root.join("home/.local/share/keyrings")).unwrap();
        let r = resolve(root.join("home/.local/bin/tool").as_os_str(), None, &root, &[], &[root.join("home/.local/share/keyrings")]);
        assert_eq!(r.roots, vec![(root.join("home/.local/bin"), format!("program directory of {}", root.join("home/.local/bin/tool").display()))]);
    }

    #[test]
    fn a_symlink_into_a_credential_store_names_that_store_as_a_root() {
        // The plan refuses it (sandbox tests); here: the root is reported, not hidden.
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        exe(&root.join("home/.ssh/tool"), "\x7fELF");
        std::fs::create_dir_all(root.join("ws")).unwrap();
        symlink(root.join("home/.ssh/tool"), root.join("ws/tool")).unwrap();
        let r = resolve(root.join("ws/tool").as_os_str(), None, &root, &[], &[]);
        assert!(r.roots.iter().any(|(p, _)| p == &root.join("home/.ssh")), "{:?}", r.roots);
    }
}
