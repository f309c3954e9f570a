//! The Landlock sandbox an agent runs in.
//!
//! This module owns deciding *what* the agent may touch ([`plan`] → [`Spec`], a plain
//! serialisable value) and *enforcing* it on the calling thread ([`apply`], used by the
//! `airlock __sandbox-exec` trampoline right before it execs the agent). The agent may
//! read and write the workspace and temp dirs, read and execute system paths and
//! `--allow-read` paths, use devices under `/dev`, read `/proc` and `/sys` — and nothing
//! else: the state directory, `~/.aws`, `~/.ssh`, `~/.kube`, `~/.netrc` and the rest of
//! `$HOME` stay out of reach. With a port list it may open TCP connections to those
//! ports only.
//!
//! It must never grant a path that contains or lies inside a protected path (the state
//! directory, credential stores); such a plan is refused, not weakened. It must never
//! restrict the supervisor: [`apply`] restricts only the calling thread and is meant for
//! the trampoline, which execs immediately afterwards.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access as _, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort, RestrictSelf, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, path_beneath_rules,
};
use serde::{Deserialize, Serialize};

use crate::Error;

/// What a rule allows beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Everything: read, write, create, remove, execute (workspace, temp dirs).
    ReadWrite,
    /// Read files, list directories, execute (system paths, `--allow-read`).
    ReadExec,
    /// Read files and list directories only (`/proc`, `/sys`, single config files).
    ReadOnly,
    /// Open existing device files for reading and writing, with ioctls (`/dev`).
    Device,
}

/// One Landlock path rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The path (canonical; the rule covers everything beneath it).
    pub path: PathBuf,
    /// What is allowed.
    pub access: Access,
}

/// The complete sandbox, as handed from the supervisor to the trampoline. Paths and
/// ports only: no secret ever goes in here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The Landlock ABI the rights are computed for (the supervisor's probe).
    pub abi: u8,
    /// Path rules.
    pub rules: Vec<Rule>,
    /// `Some(ports)`: TCP connect is allowed to these ports only (ABI ≥ 4).
    pub connect_tcp: Option<Vec<u16>>,
    /// Namespaces, the gateway relay and the seccomp filter.
    #[serde(default)]
    pub isolation: Isolation,
}

/// What the trampoline sets up besides Landlock. Every field is a hard requirement: the
/// trampoline fails rather than start the agent with less.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// A network namespace of the agent's own (only loopback inside).
    pub net_ns: bool,
    /// PID and mount namespaces (the agent is a child of the sandbox's PID 1 and sees a
    /// `/proc` with only the sandbox's processes).
    pub pid_ns: bool,
    /// With `net_ns`: relay `127.0.0.1:port` inside the namespace to the gateway bridge.
    pub relay: Option<RelaySpec>,
    /// The seccomp filter ([`crate::seccomp`]).
    pub seccomp: bool,
    /// Let IP datagram sockets through the filter (`--network open` only: DNS).
    pub allow_udp: bool,
    /// With `pid_ns`: a private tmpfs on each of [`FRESH_MOUNTS`], the rule paths beneath
    /// them bind-mounted back (another process's files in `/tmp` — a Kerberos ticket cache,
    /// a tool's temp files — are not there).
    #[serde(default)]
    pub private_tmp: bool,
}

/// The gateway as the agent sees it inside its network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelaySpec {
    /// The port on `127.0.0.1` inside the namespace.
    pub port: u16,
    /// The supervisor's bridge socket ([`crate::relay::Bridge`]).
    pub bridge: PathBuf,
}

impl Spec {
    /// Add a rule (e.g. a private temp dir created after planning).
    pub fn allow(&mut self, path: PathBuf, access: Access) {
        self.rules.push(Rule { path, access });
    }

    /// Serialise for the trampoline's `--spec` argument.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("spec serialises")
    }

    /// Parse the trampoline's `--spec` argument.
    pub fn from_json(s: &str) -> Result<Self, Error> {
        serde_json::from_str(s).map_err(|e| Error::Sandbox(format!("malformed sandbox spec: {e}")))
    }
}

/// A path the agent must never be able to read.
#[derive(Debug, Clone)]
pub struct Protected {
    /// The path (canonical if it exists).
    pub path: PathBuf,
    /// What it is, for messages: `the airlock state directory`, `~/.aws`…
    pub what: String,
    /// Whether granting something *inside* it is also refused (true for the state dir
    /// and credential stores; false for `$HOME`, whose project dirs may be workspaces).
    pub no_inside: bool,
}

/// What the supervisor knows when planning the sandbox.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The workspace (read + write + execute).
    pub workspace: PathBuf,
    /// Shared temp dirs (`/tmp`, `$TMPDIR`); replaced by a private temp dir if one of them
    /// contains a protected path.
    pub temp_dirs: Vec<PathBuf>,
    /// `--allow-read` paths (read + execute).
    pub allow_read: Vec<PathBuf>,
    /// System paths (read + execute); dropped, not refused, if one contains a protected path.
    pub system: Vec<PathBuf>,
    /// Paths that must stay unreadable.
    pub protected: Vec<Protected>,
    /// `Some(ports)` for `--network gateway-only`.
    pub connect_tcp: Option<Vec<u16>>,
    /// `--allow-write` paths (read + write); refused when they hold or lie in a protected path.
    pub allow_write: Vec<PathBuf>,
    /// Paths opened read + execute because the agent's program lives there (its
    /// installation root, interpreter, venv), each with the reason to show the user.
    pub exec_roots: Vec<(PathBuf, String)>,
    /// The agent's private home (read + write). It may lie inside the state directory, but
    /// only under [`AGENT_HOMES`] there.
    pub agent_home: Option<PathBuf>,
    /// Whether `/tmp` and `/dev/shm` will be fresh, private tmpfs mounts (namespace mode):
    /// then they are granted even when they hold a protected path today.
    pub fresh_tmp: bool,
}

/// The shared directories that get a private tmpfs in the agent's mount namespace (every
/// rule path beneath them is bind-mounted back; nothing else the host keeps there is seen).
pub const FRESH_MOUNTS: &[&str] = &["/tmp", "/dev/shm"];

/// The one part of the state directory an agent may see: `agents/<name>/home`.
pub const AGENT_HOMES: &str = "agents";

/// The planned sandbox.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The rules to hand to the trampoline.
    pub spec: Spec,
    /// Why the shared temp dirs were withheld (the caller must then create a private temp
    /// dir, add it with [`Spec::allow`] and point `TMPDIR` at it). `None`: shared temp dirs granted.
    pub private_tmp: Option<String>,
    /// Things the user should know (system paths dropped, …).
    pub notes: Vec<String>,
}

/// The default system paths an agent may read and execute.
pub const SYSTEM_PATHS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix/store"];

/// Credential stores under `$HOME` that are protected by name (the whole of `$HOME` is
/// withheld anyway; naming them makes `--allow-read ~/.aws` an error rather than a grant).
pub const HOME_CREDENTIAL_STORES: &[&str] = &[
    ".aws",
    ".ssh",
    ".kube",
    ".netrc",
    ".git-credentials",
    ".docker",
    ".gnupg",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".terraform.d",
    ".vault-token",
    ".local/share/airlock",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".password-store",
    ".local/share/keyrings",
    ".config/op",
    ".config/hub",
    ".gem/credentials",
    ".m2/settings.xml",
    ".gradle/gradle.properties",
    ".config/airlock",
    ".claude/.credentials.json",
    ".codex/auth.json",
];

/// Files and directories under the system paths that hold credentials (host keys, password
/// hashes, TLS private keys). Only root can read most of them, and root is exactly who runs
/// agents in dev containers: the system rules are split around them instead of granting
/// the whole directory.
pub const SYSTEM_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/ssl/private",
    "/etc/letsencrypt",
    "/etc/NetworkManager/system-connections",
    "/etc/wireguard",
    "/etc/ipsec.secrets",
    "/etc/ppp/chap-secrets",
    "/etc/ppp/pap-secrets",
    "/etc/krb5.keytab",
    "/etc/airlock",
];

/// The system secrets present on this machine: [`SYSTEM_SECRETS`] plus the SSH host
/// private keys in `/etc/ssh`.
pub fn system_secrets() -> Vec<Protected> {
    let mut v: Vec<Protected> =
        SYSTEM_SECRETS.iter().map(|p| Protected { path: canonical_or_same(Path::new(p)), what: (*p).to_owned(), no_inside: true }).collect();
    if let Ok(rd) = std::fs::read_dir("/etc/ssh") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") && name.ends_with("_key") {
                v.push(Protected { path: e.path(), what: format!("the SSH host key {name}"), no_inside: true });
            }
        }
    }
    v
}

/// Protected paths for a user whose home is `home` and whose state dir is `state`.
pub fn protected_paths(home: Option<&Path>, state: &Path) -> Vec<Protected> {
    let mut v = vec![Protected { path: canonical_or_same(state), what: STATE_WHAT.into(), no_inside: true }];
    if let Some(h) = home.filter(|h| h.is_absolute() && *h != Path::new("/")) {
        let h = canonical_or_same(h);
        v.push(Protected { path: h.clone(), what: "your home directory".into(), no_inside: false });
        for s in HOME_CREDENTIAL_STORES {
            v.push(Protected { path: h.join(s), what: format!("~/{s}"), no_inside: true });
        }
    }
    v
}

fn canonical_or_same(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The protected path that granting `g` would expose, if any.
fn exposes<'a>(g: &Path, protected: &'a [Protected]) -> Option<&'a Protected> {
    protected.iter().find(|p| p.path.starts_with(g) || (p.no_inside && g.starts_with(&p.path)))
}

/// The entries of `dir` to grant instead of `dir` itself, leaving out every protected path
/// inside it (recursing into directories that contain one). Depth-limited: a protected path
/// nested deeper than that drops its whole branch.
fn split_around(dir: &Path, protected: &[Protected], out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let inside: Vec<&Protected> = protected.iter().filter(|x| x.path.starts_with(&p)).collect();
        if inside.is_empty() {
            out.push(p);
        } else if inside.iter().all(|x| x.path != p) && depth < 4 && e.file_type().is_ok_and(|t| t.is_dir()) {
            split_around(&p, protected, out, depth + 1);
        }
    }
}

const STATE_WHAT: &str = "the airlock state directory";

/// Plan the sandbox for `inputs` at Landlock ABI `abi`.
///
/// Fails when the workspace or an `--allow-read` path would expose a protected path, or
/// when a required path does not exist.
pub fn plan(inputs: &Inputs, abi: u8) -> Result<Plan, Error> {
    let mut spec = Spec { abi, rules: Vec::new(), connect_tcp: inputs.connect_tcp.clone(), isolation: Isolation::default() };
    let mut notes = Vec::new();
    let protected = &inputs.protected;

    let ws = std::fs::canonicalize(&inputs.workspace).map_err(|e| Error::Sandbox(format!("workspace {}: {e}", inputs.workspace.display())))?;
    if let Some(p) = exposes(&ws, protected) {
        let rel = if p.path.starts_with(&ws) { "contains" } else { "is inside" };
        return Err(Error::Sandbox(format!(
            "the workspace {} {rel} {} ({}); the agent could read it. Run from a project directory that holds no credentials",
            ws.display(),
            p.what,
            p.path.display()
        )));
    }
    spec.allow(ws, Access::ReadWrite);

    let mut private_tmp = None;
    let mut temps = Vec::new();
    for t in &inputs.temp_dirs {
        let Ok(t) = std::fs::canonicalize(t) else { continue };
        // A temp dir that becomes a fresh tmpfs in the agent's mount namespace shows none of
        // what is in it now: granting it exposes nothing.
        let fresh = FRESH_MOUNTS.iter().any(|f| t == Path::new(f)) && inputs.fresh_tmp;
        if let Some(p) = exposes(&t, protected).filter(|_| !fresh) {
            private_tmp = Some(format!("{} contains {} ({})", t.display(), p.what, p.path.display()));
            temps.clear();
            break;
        }
        if !temps.contains(&t) {
            temps.push(t);
        }
    }
    for t in temps {
        spec.allow(t, Access::ReadWrite);
    }

    for a in &inputs.allow_read {
        let c = std::fs::canonicalize(a).map_err(|e| Error::Sandbox(format!("--allow-read {}: {e}", a.display())))?;
        if let Some(p) = exposes(&c, protected) {
            return Err(Error::Sandbox(format!(
                "--allow-read {} would expose {} ({}); allow the specific tool directories instead",
                a.display(),
                p.what,
                p.path.display()
            )));
        }
        spec.allow(c, Access::ReadExec);
    }

    for a in &inputs.allow_write {
        let c = std::fs::canonicalize(a).map_err(|e| Error::Sandbox(format!("--allow-write {}: {e}", a.display())))?;
        if let Some(p) = exposes(&c, protected) {
            return Err(Error::Sandbox(format!(
                "--allow-write {} would let the agent {} {} ({}); allow a directory that holds no credentials (a tool cache such as ~/.cache/pip)",
                a.display(),
                if p.path.starts_with(&c) { "write over" } else { "write inside" },
                p.what,
                p.path.display()
            )));
        }
        spec.allow(c, Access::ReadWrite);
    }

    for (root, why) in &inputs.exec_roots {
        let c = canonical_or_same(root);
        if let Some(p) = exposes(&c, protected) {
            return Err(Error::Sandbox(format!(
                "the agent's program needs {} ({why}), which would expose {} ({}); install the program elsewhere or run it from a path that holds no credentials",
                c.display(),
                p.what,
                p.path.display()
            )));
        }
        if !spec.rules.iter().any(|r| c.starts_with(&r.path)) {
            spec.allow(c, Access::ReadExec);
        }
    }

    if let Some(home) = &inputs.agent_home {
        let c = std::fs::canonicalize(home).map_err(|e| Error::Sandbox(format!("--agent-home {}: {e}", home.display())))?;
        // Inside the state directory only under agents/; never holding a protected path.
        // (Any protected entry naming the state directory itself counts: the default state
        // directory, ~/.local/share/airlock, is also listed among the home's stores.)
        let state = protected.iter().find(|p| p.what == STATE_WHAT).map(|p| p.path.clone());
        let inside_state_ok =
            |p: &Protected| state.as_ref().is_some_and(|st| p.path == *st) && c.starts_with(p.path.join(AGENT_HOMES)) && c != p.path.join(AGENT_HOMES);
        if let Some(p) = protected.iter().find(|p| p.path.starts_with(&c) || (p.no_inside && c.starts_with(&p.path) && !inside_state_ok(p))) {
            return Err(Error::Sandbox(format!(
                "--agent-home {} would expose {} ({}); use a directory of its own (the default is <state dir>/{AGENT_HOMES}/<agent>/home)",
                home.display(),
                p.what,
                p.path.display()
            )));
        }
        spec.allow(c, Access::ReadWrite);
    }

    let fixed: [(&str, Access); 4] = [("/proc", Access::ReadOnly), ("/sys", Access::ReadOnly), ("/dev", Access::Device), ("/dev/shm", Access::ReadWrite)];
    let system = inputs.system.iter().map(|p| (p.clone(), Access::ReadExec)).chain(fixed.iter().map(|(p, a)| (PathBuf::from(p), *a)));
    for (s, access) in system {
        let Ok(c) = std::fs::canonicalize(&s) else { continue };
        if let Some(p) = exposes(&c, protected) {
            if p.no_inside && !c.starts_with(&p.path) {
                // A secret file inside a system directory: grant everything around it.
                let mut split = Vec::new();
                split_around(&c, protected, &mut split, 0);
                for d in split {
                    if !spec.rules.iter().any(|r| r.path == d && r.access == access) {
                        spec.allow(d, access);
                    }
                }
                continue;
            }
            notes.push(format!("{} is not readable in the sandbox: it contains {} ({})", s.display(), p.what, p.path.display()));
            continue;
        }
        if !spec.rules.iter().any(|r| r.path == c && r.access == access) {
            spec.allow(c, access);
        }
    }

    // /etc/resolv.conf is often a symlink out of /etc (e.g. into /run); Landlock checks the target.
    if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf")
        && !spec.rules.iter().any(|r| target.starts_with(&r.path))
        && exposes(&target, protected).is_none()
    {
        spec.allow(target, Access::ReadOnly);
    }
    Ok(Plan { spec, private_tmp, notes })
}

/// Landlock on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// The ABI this build will use (the kernel's, capped at what the `landlock` crate knows).
    /// `None`: Landlock is not available.
    pub abi: Option<u8>,
    /// Whether Landlock is built in but disabled at boot (`lsm=` without `landlock`).
    pub disabled: bool,
}

/// Probe the running kernel without restricting anything.
pub fn probe() -> Support {
    // A RestrictSelf with no flags and no_new_privs off makes no restricting syscall.
    match RestrictSelf::default().no_new_privs(false).apply() {
        Ok(s) => match s.landlock {
            LandlockStatus::Available { effective_abi, .. } => Support { abi: Some(abi_number(effective_abi)), disabled: false },
            LandlockStatus::NotEnabled => Support { abi: None, disabled: true },
            _ => Support { abi: None, disabled: false },
        },
        Err(_) => Support { abi: None, disabled: false },
    }
}

fn abi_number(abi: ABI) -> u8 {
    const ALL: [ABI; 10] = [ABI::V1, ABI::V2, ABI::V3, ABI::V4, ABI::V5, ABI::V6, ABI::V7, ABI::V8, ABI::V9, ABI::V10];
    ALL.iter().position(|a| *a == abi).map_or(0, |i| i as u8 + 1)
}

fn abi_from_number(n: u8) -> Result<ABI, Error> {
    const ALL: [ABI; 10] = [ABI::V1, ABI::V2, ABI::V3, ABI::V4, ABI::V5, ABI::V6, ABI::V7, ABI::V8, ABI::V9, ABI::V10];
    ALL.get(usize::from(n).wrapping_sub(1)).copied().ok_or_else(|| Error::Sandbox(format!("unknown Landlock ABI {n}")))
}

/// The filesystem rights `access` stands for at `abi`.
pub fn rights(access: Access, abi: ABI) -> BitFlags<AccessFs> {
    let all = AccessFs::from_all(abi);
    match access {
        Access::ReadWrite => all,
        Access::ReadExec => AccessFs::from_read(abi),
        Access::ReadOnly => AccessFs::ReadFile | AccessFs::ReadDir,
        Access::Device => (AccessFs::ReadFile | AccessFs::ReadDir | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev) & all,
    }
}

/// What [`apply`] enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The ABI enforced.
    pub abi: u8,
}

/// Restrict the calling thread (and everything it execs or forks afterwards) to `spec`.
///
/// Every requested right is a hard requirement: if the kernel cannot enforce the spec
/// exactly, this fails and nothing should be started.
pub fn apply(spec: &Spec) -> Result<Applied, Error> {
    let abi = abi_from_number(spec.abi)?;
    let e = |what: &str, err: landlock::RulesetError| Error::Sandbox(format!("{what}: {err}"));
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|x| e("cannot handle filesystem access", x))?;
    if spec.connect_tcp.is_some() {
        if spec.abi < 4 {
            return Err(Error::Sandbox(format!("--network gateway-only needs Landlock ABI 4 (Linux 6.7); this kernel has ABI {}", spec.abi)));
        }
        rs = rs.handle_access(AccessNet::ConnectTcp).map_err(|x| e("cannot handle TCP connect", x))?;
    }
    if spec.abi >= 6 {
        // The agent may not signal the supervisor or reach abstract UNIX sockets outside the sandbox.
        rs = rs.scope(Scope::from_all(abi)).map_err(|x| e("cannot scope signals and abstract sockets", x))?;
    }
    let mut created = rs.create().map_err(|x| e("cannot create the Landlock ruleset", x))?;
    for r in &spec.rules {
        created = created
            .add_rules(path_beneath_rules([&r.path], rights(r.access, abi)))
            .map_err(|x| e(&format!("cannot add a rule for {}", r.path.display()), x))?;
    }
    for port in spec.connect_tcp.iter().flatten() {
        created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp)).map_err(|x| e("cannot add a TCP rule", x))?;
    }
    let status = created.restrict_self().map_err(|x| e("cannot restrict the process", x))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(Error::Sandbox(format!("Landlock only partly enforced ({:?}); refusing to start the agent", status.ruleset)));
    }
    Ok(Applied { abi: spec.abi })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tree {
        _dir: tempfile::TempDir,
        root: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for d in ["home/.aws", "home/.ssh", "home/proj", "state", "tmp", "tools/bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Tree { _dir: dir, root }
    }

    fn inputs(t: &Tree) -> Inputs {
        Inputs {
            workspace: t.root.join("home/proj"),
            temp_dirs: vec![t.root.join("tmp")],
            allow_read: vec![],
            system: vec![PathBuf::from("/usr"), PathBuf::from("/etc")],
            protected: protected_paths(Some(&t.root.join("home")), &t.root.join("state")),
            connect_tcp: None,
            ..Default::default()
        }
    }

    fn has(spec: &Spec, path: &Path, access: Access) -> bool {
        spec.rules.iter().any(|r| r.path == path && r.access == access)
    }

    #[test]
    fn ordinary_plan_grants_workspace_tmp_system_and_nothing_under_home() {
        let t = tree();
        let p = plan(&inputs(&t), 7).unwrap();
        assert!(has(&p.spec, &t.root.join("home/proj"), Access::ReadWrite));
        assert!(has(&p.spec, &t.root.join("tmp"), Access::ReadWrite));
        assert!(has(&p.spec, Path::new("/usr"), Access::ReadExec));
        assert!(has(&p.spec, Path::new("/proc"), Access::ReadOnly));
        assert!(has(&p.spec, Path::new("/dev"), Access::Device));
        assert_eq!(p.private_tmp, None);
        for r in &p.spec.rules {
            assert!(!t.root.join("state").starts_with(&r.path), "{r:?} covers the state dir");
            assert!(!t.root.join("home/.aws").starts_with(&r.path), "{r:?} covers ~/.aws");
        }
    }

    #[test]
    fn workspace_containing_home_or_state_is_refused() {
        let t = tree();
        for ws in ["home", "state", "", "home/.aws", "state"] {
            let mut i = inputs(&t);
            i.workspace = t.root.join(ws);
            let err = plan(&i, 7).unwrap_err().to_string();
            assert!(err.contains("workspace"), "{ws}: {err}");
        }
    }

    #[test]
    fn allow_read_of_a_credential_store_or_home_is_refused() {
        let t = tree();
        for a in ["home/.ssh", "home", "state", ""] {
            let mut i = inputs(&t);
            i.allow_read = vec![t.root.join(a)];
            assert!(plan(&i, 7).unwrap_err().to_string().contains("--allow-read"), "{a}");
        }
        let mut i = inputs(&t);
        i.allow_read = vec![t.root.join("tools/bin")];
        assert!(has(&plan(&i, 7).unwrap().spec, &t.root.join("tools/bin"), Access::ReadExec));
        i.allow_read = vec![t.root.join("does-not-exist")];
        assert!(plan(&i, 7).is_err());
    }

    #[test]
    fn temp_dir_holding_a_protected_path_becomes_private() {
        let t = tree();
        let mut i = inputs(&t);
        i.temp_dirs = vec![t.root.clone()]; // a "tmp" that contains the state dir and home
        let p = plan(&i, 7).unwrap();
        assert!(p.private_tmp.as_deref().unwrap().contains("state directory"), "{:?}", p.private_tmp);
        assert!(!p.spec.rules.iter().any(|r| r.path == t.root));
    }

    #[test]
    fn system_path_holding_a_protected_path_is_split_around_it() {
        let t = tree();
        let mut i = inputs(&t);
        i.system.push(t.root.clone());
        let p = plan(&i, 7).unwrap();
        assert!(!p.spec.rules.iter().any(|r| r.path == t.root));
        // Everything beside the state directory and the home stays readable.
        assert!(has(&p.spec, &t.root.join("tools"), Access::ReadExec), "{:?}", p.spec.rules);
        for r in &p.spec.rules {
            assert!(!t.root.join("state").starts_with(&r.path), "{r:?} covers the state dir");
            assert!(!t.root.join("home/.ssh").starts_with(&r.path), "{r:?} covers ~/.ssh");
        }
        // A system path that *is* inside a protected one is dropped, with a note.
        let mut i = inputs(&t);
        i.system.push(t.root.join("home/.aws"));
        let p = plan(&i, 7).unwrap();
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    }

    #[test]
    fn secret_files_in_system_directories_are_left_out_and_the_rest_granted() {
        let t = tree();
        let etc = t.root.join("etc");
        std::fs::create_dir_all(etc.join("ssh")).unwrap();
        for f in ["passwd", "shadow", "ssh/ssh_config", "ssh/ssh_host_ed25519_key"] {
            std::fs::write(etc.join(f), "x").unwrap();
        }
        let mut i = inputs(&t);
        i.system = vec![etc.clone()];
        for f in ["shadow", "ssh/ssh_host_ed25519_key"] {
            i.protected.push(Protected { path: etc.join(f), what: f.into(), no_inside: true });
        }
        let p = plan(&i, 7).unwrap();
        assert!(has(&p.spec, &etc.join("passwd"), Access::ReadExec));
        assert!(has(&p.spec, &etc.join("ssh/ssh_config"), Access::ReadExec));
        assert!(!p.spec.rules.iter().any(|r| etc.join("shadow").starts_with(&r.path)));
        assert!(!p.spec.rules.iter().any(|r| etc.join("ssh/ssh_host_ed25519_key").starts_with(&r.path)));
    }

    #[test]
    fn allow_write_and_agent_home_are_checked_like_reads() {
        let t = tree();
        std::fs::create_dir_all(t.root.join("home/.cache/pip")).unwrap();
        std::fs::create_dir_all(t.root.join("state/agents/coder/home")).unwrap();
        for (w, ok) in [("home", false), ("state", false), ("home/.aws", false), ("", false), ("home/.cache/pip", true)] {
            let mut i = inputs(&t);
            i.allow_write = vec![t.root.join(w)];
            let r = plan(&i, 7);
            assert_eq!(r.is_ok(), ok, "--allow-write {w}: {:?}", r.err().map(|e| e.to_string()));
            if let Err(e) = r {
                assert!(e.to_string().contains("--allow-write"), "{e}");
            }
        }
        let mut i = inputs(&t);
        i.agent_home = Some(t.root.join("state/agents/coder/home"));
        assert!(has(&plan(&i, 7).unwrap().spec, &t.root.join("state/agents/coder/home"), Access::ReadWrite));
        // The default state directory, ~/.local/share/airlock, is also one of the home's
        // protected stores: its agents/ part is still the agent home's place.
        let default_state = t.root.join("home/.local/share/airlock");
        std::fs::create_dir_all(default_state.join("agents/coder/home")).unwrap();
        let mut d = inputs(&t);
        d.protected = protected_paths(Some(&t.root.join("home")), &default_state);
        d.agent_home = Some(default_state.join("agents/coder/home"));
        assert!(has(&plan(&d, 7).unwrap().spec, &default_state.join("agents/coder/home"), Access::ReadWrite));
        d.agent_home = Some(default_state.join("agents"));
        assert!(plan(&d, 7).is_err());
        for bad in ["state", "state/agents", "home/.ssh", "home"] {
            i.agent_home = Some(t.root.join(bad));
            assert!(plan(&i, 7).unwrap_err().to_string().contains("--agent-home"), "{bad}");
        }
    }

    #[test]
    fn spec_round_trips_and_rights_are_as_documented() {
        let t = tree();
        let mut i = inputs(&t);
        i.connect_tcp = Some(vec![7700]);
        let s = plan(&i, 7).unwrap().spec;
        assert_eq!(Spec::from_json(&s.to_json()).unwrap(), s);
        assert!(Spec::from_json("{not json").is_err());
        let abi = ABI::V7;
        assert!(!rights(Access::ReadExec, abi).contains(AccessFs::WriteFile));
        assert!(rights(Access::ReadExec, abi).contains(AccessFs::Execute));
        assert!(!rights(Access::ReadOnly, abi).contains(AccessFs::Execute));
        assert!(rights(Access::Device, abi).contains(AccessFs::IoctlDev));
        assert!(!rights(Access::Device, abi).contains(AccessFs::MakeReg));
        assert!(!rights(Access::Device, ABI::V2).contains(AccessFs::Truncate));
        assert_eq!(rights(Access::ReadWrite, abi), AccessFs::from_all(abi));
    }

    #[test]
    fn abi_numbers_round_trip() {
        for n in 1..=10 {
            assert_eq!(abi_number(abi_from_number(n).unwrap()), n);
        }
        assert!(abi_from_number(0).is_err());
        assert!(abi_from_number(11).is_err());
    }
}

#[cfg(test)]
mod enforce_tests {
    use super::*;

    /// Applies a real ruleset on a throwaway thread (Landlock restricts only the calling
    /// thread) and checks what that thread can still open.
    #[test]
    fn applied_ruleset_hides_everything_not_granted() {
        let support = probe();
        let Some(abi) = support.abi else {
            // Not a skip: on a kernel without Landlock, apply must refuse.
            let spec = Spec { abi: 1, rules: vec![], connect_tcp: None, isolation: Isolation::default() };
            assert!(std::thread::spawn(move || apply(&spec)).join().unwrap().is_err());
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("ws")).unwrap();
        std::fs::create_dir_all(root.join("secret")).unwrap();
        std::fs::write(root.join("secret/key"), "k").unwrap();
        std::fs::write(root.join("ws/file"), "w").unwrap();
        let spec = Spec { abi, rules: vec![Rule { path: root.join("ws"), access: Access::ReadWrite }], connect_tcp: None, isolation: Isolation::default() };
        let r = root.clone();
        let (applied, secret, ws_read, ws_write) = std::thread::spawn(move || {
            let applied = apply(&spec).map(|a| a.abi);
            (applied, std::fs::read(r.join("secret/key")), std::fs::read(r.join("ws/file")), std::fs::write(r.join("ws/new"), "n"))
        })
        .join()
        .unwrap();
        assert_eq!(applied.unwrap(), abi);
        assert_eq!(secret.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(ws_read.unwrap(), b"w");
        ws_write.unwrap();
        // This (unrestricted) thread still reads everything.
        assert_eq!(std::fs::read(root.join("secret/key")).unwrap(), b"k");
    }
}
