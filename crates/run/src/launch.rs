//! Planning a launch: from what the user asked (`--network`, `--allow-*`, `--agent-home`)
//! and what the kernel offers, to the exact sandbox the trampoline enforces.
//!
//! This module owns the decisions between the flags and the mechanisms: which namespaces
//! the agent gets (probed, with a fallback to Landlock ports + seccomp and a warning naming
//! what that does not cover), which directories its program needs ([`crate::exe`]), its
//! private home ([`crate::home`]), the gateway relay ([`crate::relay`]), the variables that
//! point it at all of this, the gateway check before start, and the hint printed when an
//! agent fails after the sandbox refused something.
//!
//! It never mints or revokes a token, never writes the audit log and never prints: it
//! returns what to say and what to record, and the caller (the CLI) does both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
use crate::relay::Bridge;
use crate::sandbox::{self, Access, Isolation, RelaySpec, Spec};

/// What the agent may reach on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// Nothing at all (no gateway either).
    None,
    /// The gateway only (the default).
    GatewayOnly,
    /// Every host, directly (an audited opt-out).
    Open,
}

/// How the sandbox is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// Namespaces when the kernel allows them, else Landlock + seccomp with a warning.
    Auto,
    /// Namespaces or nothing: refuse to start without them.
    Namespaces,
    /// Landlock + seccomp only (for kernels or containers where namespaces misbehave).
    Landlock,
}

/// What the caller knows before the sandbox is planned.
#[derive(Debug, Clone)]
pub struct Request {
    /// The agent's name (for its default home).
    pub agent: String,
    /// The workspace (canonical).
    pub workspace: PathBuf,
    /// The directory the agent starts in.
    pub cwd: PathBuf,
    /// The agent command.
    pub command: Vec<OsString>,
    /// The `PATH` the agent will get.
    pub path_var: Option<OsString>,
    /// The user's real home.
    pub user_home: Option<PathBuf>,
    /// The airlock state directory.
    pub state: PathBuf,
    /// `--allow-read`.
    pub allow_read: Vec<PathBuf>,
    /// `--allow-write`.
    pub allow_write: Vec<PathBuf>,
    /// `--agent-home` (None: the default in the state directory).
    pub agent_home: Option<PathBuf>,
    /// `--network`.
    pub network: Network,
    /// `--isolation`.
    pub isolation: IsolationMode,
    /// The gateway's TCP address (`HOST:PORT`), as the supervisor reaches it.
    pub gateway_addr: String,
    /// Shared temp dirs (`/tmp`, `$TMPDIR`).
    pub temp_dirs: Vec<PathBuf>,
}

/// The planned launch.
pub struct Prepared {
    /// The sandbox for the trampoline.
    pub spec: Spec,
    /// The agent's home (canonical).
    pub agent_home: PathBuf,
    /// Variables to set for the agent (home, temp dir), after the scrubbed environment.
    pub env: Vec<(String, String)>,
    /// The gateway URL as the agent reaches it (inside its namespace: `http://127.0.0.1:PORT`).
    pub gateway_url: Option<String>,
    /// What was opened and why (`opened ~/.nvm/versions/node/v20: node installation of claude`).
    pub opened: Vec<String>,
    /// What the user must know: a fallback and what it does not cover, notes from the plan.
    pub warnings: Vec<String>,
    /// Config lines left out of copies in the agent home.
    pub filtered: Vec<String>,
    /// The isolation actually used, for the audit record.
    pub isolation_used: &'static str,
    /// The supervisor's end of the relay (dropped: the socket goes away).
    pub bridge: Option<Bridge>,
    /// A private temp dir, when the shared one holds a protected path.
    pub private_tmp: Option<tempfile::TempDir>,
}

/// Whether `airlock __sandbox-exec --probe` could enter the namespaces: `Ok` or the kernel's
/// reason. `exe` is the airlock binary.
pub fn probe_namespaces(exe: &Path) -> Result<(), String> {
    let out = std::process::Command::new(exe)
        .arg(crate::supervise::TRAMPOLINE_SUBCOMMAND)
        .arg("--probe")
        .arg("--supervisor")
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the namespace probe: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(if msg.is_empty() { format!("the namespace probe failed ({})", out.status) } else { msg })
    }
}

fn port_of(addr: &str) -> Result<u16, Error> {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| Error::Sandbox(format!("gateway address {addr:?} must be HOST:PORT (--gateway)")))
}

/// Plan everything: Landlock ABI, namespaces (probed with `exe`), the program's roots, the
/// agent home, the relay. Nothing is started; the bridge listens but relays nothing until
/// the agent connects.
pub fn prepare(req: &Request, exe: &Path) -> Result<Prepared, Error> {
    let support = sandbox::probe();
    let Some(abi) = support.abi else {
        let why = if support.disabled {
            "Landlock is built into this kernel but not enabled at boot (add `landlock` to the lsm= kernel parameter)"
        } else {
            "this kernel has no Landlock support (Linux 5.13 or newer is needed)"
        };
        return Err(Error::Sandbox(format!("cannot sandbox the agent: {why}; --no-sandbox runs it without one (audited), able to read every file you can")));
    };
    let mut warnings = Vec::new();
    let ns = match req.isolation {
        IsolationMode::Landlock => false,
        IsolationMode::Auto | IsolationMode::Namespaces => match probe_namespaces(exe) {
            Ok(()) => true,
            Err(why) if req.isolation == IsolationMode::Namespaces => {
                return Err(Error::Sandbox(format!("--isolation namespaces: {why}")));
            }
            Err(why) => {
                warnings.push(format!("no namespaces for the agent ({why}); falling back to Landlock + seccomp"));
                false
            }
        },
    };
    let gateway_port = port_of(&req.gateway_addr)?;

    // A private /tmp and /dev/shm, unless the workspace *is* one of them (a fresh tmpfs would
    // hide the very files the agent is to work on).
    let private_tmp = ns && !sandbox::FRESH_MOUNTS.iter().any(|m| req.workspace == Path::new(m));
    let mut iso = Isolation { seccomp: true, pid_ns: ns, private_tmp, ..Default::default() };
    // The network, by mode and by what the kernel gave us.
    let mut connect_tcp = None;
    match (req.network, ns) {
        (Network::None | Network::GatewayOnly, true) => iso.net_ns = true,
        (Network::Open, _) => iso.allow_udp = true,
        (Network::None, false) => connect_tcp = Some(vec![]),
        (Network::GatewayOnly, false) => connect_tcp = Some(vec![gateway_port]),
    }
    if connect_tcp.is_some() && abi < 4 {
        return Err(Error::Sandbox(format!(
            "without namespaces, --network {} needs Landlock ABI 4 (Linux 6.7) to restrict TCP; this kernel has ABI {abi}. Use --network open (audited) or a kernel with user namespaces",
            if req.network == Network::None { "none" } else { "gateway-only" }
        )));
    }
    if !ns {
        let mut not_covered = vec![
            "other processes' command lines and status stay readable in /proc (their environment, memory and descriptors are refused by Landlock)",
            "a daemon the agent starts may outlive it",
        ];
        if req.network == Network::GatewayOnly {
            not_covered.insert(0, "TCP to the gateway's port is allowed on every host, not only the gateway");
        }
        warnings.push(format!("not covered without namespaces: {}", not_covered.join("; ")));
    }
    let isolation_used = match (ns, req.network) {
        (true, Network::Open) => "pid+mount namespaces, landlock, seccomp",
        (true, _) => "network+pid+mount namespaces, landlock, seccomp",
        (false, _) => "landlock, seccomp",
    };

    // What must stay hidden.
    let user_home: Option<PathBuf> = req.user_home.as_deref().map(|h| std::fs::canonicalize(h).unwrap_or_else(|_| h.to_path_buf()));
    let mut protected = sandbox::protected_paths(req.user_home.as_deref(), &req.state);
    protected.extend(sandbox::system_secrets());
    let avoid: Vec<PathBuf> = protected.iter().filter(|p| p.no_inside).map(|p| p.path.clone()).collect();
    let system: Vec<PathBuf> = sandbox::SYSTEM_PATHS.iter().map(PathBuf::from).collect();

    // The agent's program and what it needs.
    let mut opened = Vec::new();
    let mut exec_roots = Vec::new();
    if let Some(program) = req.command.first() {
        let r = crate::exe::resolve(program, req.path_var.as_deref(), &req.cwd, &system, &avoid);
        for (root, why) in r.roots {
            if root.starts_with(&req.workspace) {
                continue;
            }
            opened.push(format!("{} (read-only: {why})", root.display()));
            exec_roots.push((root, why));
        }
    }
    // PATH directories under the user's home (the agent's tools), where that is safe.
    if let (Some(path), Some(home)) = (&req.path_var, &user_home) {
        for d in std::env::split_paths(path) {
            let Ok(c) = std::fs::canonicalize(&d) else { continue };
            if !c.starts_with(home) || c == *home || exec_roots.iter().any(|(r, _): &(PathBuf, String)| c.starts_with(r)) {
                continue;
            }
            if avoid.iter().any(|a| a.starts_with(&c) || c.starts_with(a)) {
                warnings.push(format!("{} is on PATH but holds or lies in a credential store; it stays hidden", c.display()));
                continue;
            }
            // A tool manager's `bin` or `shims` directory runs things from its root
            // (~/.pyenv/shims → ~/.pyenv/libexec, ~/.pyenv/versions): open the root when
            // that exposes nothing, else the directory alone.
            let root = match c.file_name().and_then(|n| n.to_str()) {
                Some("bin" | "sbin" | "shims") => c.parent().filter(|p| p != home && !avoid.iter().any(|a| a.starts_with(p))).map(Path::to_path_buf),
                _ => None,
            };
            let (dir, why) = match root {
                Some(r) => (r, format!("the tool root of {}, on PATH", c.display())),
                None => (c, "on PATH".to_owned()),
            };
            if exec_roots.iter().any(|(r, _): &(PathBuf, String)| dir.starts_with(r)) {
                continue;
            }
            opened.push(format!("{} (read-only: {why})", dir.display()));
            exec_roots.push((dir, why));
        }
    }

    // Tool managers that find their installation through $HOME (rustup's ~/.rustup behind
    // the ~/.cargo/bin proxies, pyenv, nvm, volta, bun): the agent's $HOME is its own, so
    // point them at the user's installation, read-only, when it is in use.
    let mut manager_env: Vec<(String, String)> = Vec::new();
    if let Some(home) = &user_home {
        const MANAGERS: [(&str, &str, &str); 5] = [
            (".rustup", "RUSTUP_HOME", ".cargo/bin"),
            (".pyenv", "PYENV_ROOT", ".pyenv"),
            (".nvm", "NVM_DIR", ".nvm"),
            (".volta", "VOLTA_HOME", ".volta"),
            (".bun", "BUN_INSTALL", ".bun"),
        ];
        for (dir, var, trigger) in MANAGERS {
            let root = home.join(dir);
            let used = exec_roots.iter().any(|(r, _): &(PathBuf, String)| r.starts_with(home.join(trigger)) || home.join(trigger).starts_with(r));
            if !used || !root.is_dir() || avoid.iter().any(|a| a.starts_with(&root)) {
                continue;
            }
            if !exec_roots.iter().any(|(r, _)| root.starts_with(r)) {
                opened.push(format!("{} (read-only: {var} for the tools on PATH)", root.display()));
                exec_roots.push((root.clone(), format!("{var} of the tools on PATH")));
            }
            manager_env.push((var.to_owned(), root.display().to_string()));
        }
    }

    // The agent's home.
    let home_dir = req.agent_home.clone().unwrap_or_else(|| crate::home::default_home(&req.state, &req.agent));
    let agent_home = crate::home::ensure(&home_dir)?;
    let is_store = |p: &Path| -> Option<String> {
        let c = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        // .npmrc is copied filtered (auth lines dropped); every other store is never copied.
        if c.file_name().is_some_and(|n| n == ".npmrc") {
            return None;
        }
        protected.iter().find(|x| x.no_inside && c.starts_with(&x.path)).map(|x| format!("it is {}", x.what))
    };
    let populated = crate::home::populate(&agent_home, req.user_home.as_deref(), &req.allow_read, &is_store)?;

    // --allow-read of files under the user's home are served from the agent home's copies.
    let allow_read: Vec<PathBuf> = match &user_home {
        Some(h) => req
            .allow_read
            .iter()
            .filter(|p| !(std::fs::canonicalize(p).is_ok_and(|c| c.starts_with(h) && c.is_file() && is_store(&c).is_none())))
            .cloned()
            .collect(),
        None => req.allow_read.clone(),
    };
    for p in &req.allow_read {
        if !allow_read.contains(p) {
            opened.push(format!("{} (copied into the agent home)", p.display()));
        }
    }

    let inputs = sandbox::Inputs {
        workspace: req.workspace.clone(),
        temp_dirs: req.temp_dirs.clone(),
        allow_read,
        system,
        protected,
        connect_tcp,
        allow_write: req.allow_write.clone(),
        exec_roots,
        agent_home: Some(agent_home.clone()),
        fresh_tmp: private_tmp,
    };
    let mut plan = sandbox::plan(&inputs, abi)?;
    warnings.append(&mut plan.notes);
    let mut env = crate::home::env(&agent_home);
    env.extend(manager_env);
    let mut private_tmp = None;
    if let Some(why) = &plan.private_tmp {
        let dir = tempfile::Builder::new().prefix("airlock-run-").tempdir().map_err(|e| Error::Sandbox(format!("cannot create a private temp dir: {e}")))?;
        warnings.push(format!("the agent gets a private TMPDIR {} instead of the shared temp dir ({why})", dir.path().display()));
        let c = std::fs::canonicalize(dir.path()).unwrap_or_else(|_| dir.path().to_path_buf());
        plan.spec.allow(c, Access::ReadWrite);
        env.push(("TMPDIR".into(), dir.path().display().to_string()));
        private_tmp = Some(dir);
    }

    // The relay: the supervisor's bridge socket lives in the state directory, which the
    // agent can neither read nor write.
    let mut bridge = None;
    let mut gateway_url = None;
    if iso.net_ns && req.network == Network::GatewayOnly {
        let dir = req.state.join("run");
        std::fs::create_dir_all(&dir).map_err(|e| Error::Sandbox(format!("cannot create {}: {e}", dir.display())))?;
        let sock = dir.join(format!("gw-{}-{:08x}.sock", std::process::id(), rand_suffix()));
        if sock.as_os_str().len() > 100 {
            return Err(Error::Sandbox(format!(
                "the state directory path is too long for the gateway bridge socket ({}); use a shorter --state-dir",
                sock.display()
            )));
        }
        let b = Bridge::start(&sock, req.gateway_addr.clone())?;
        iso.relay = Some(RelaySpec { port: gateway_port, bridge: b.path().to_path_buf() });
        gateway_url = Some(format!("http://127.0.0.1:{gateway_port}"));
        bridge = Some(b);
    } else if req.network != Network::None {
        gateway_url = Some(format!("http://{}", req.gateway_addr));
    }
    plan.spec.isolation = iso;
    Ok(Prepared { spec: plan.spec, agent_home, env, gateway_url, opened, warnings, filtered: populated.filtered, isolation_used, bridge, private_tmp })
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// Whether the gateway answers HTTP at `addr` within `timeout`.
pub async fn check_gateway(addr: &str, timeout: Duration) -> Result<(), String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"GET /airlock-run-check HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut head = [0u8; 8];
        s.read_exact(&mut head).await.map_err(|e| format!("no HTTP answer ({e})"))?;
        if head.starts_with(b"HTTP/1.") { Ok(()) } else { Err("it answered, but not HTTP".to_owned()) }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// The last line to print when the agent failed: what the sandbox refuses and the flag that
/// allows it. `denied` are the lines the agent wrote to stderr that mention a refused
/// access (when they could be seen): then the hint names the kind it saw — and the path,
/// when a line names one — first; without them it lists every kind.
pub fn denied_hint(network: Network, denied: &[String]) -> String {
    let text = denied.join("\n").to_ascii_lowercase();
    let net_hit = ["connection refused", "network is unreachable", "could not resolve", "name resolution"].iter().any(|w| text.contains(w));
    let fs_hit = ["permission denied", "eacces", "permissionerror", "operation not permitted", "read-only file system"].iter().any(|w| text.contains(w));
    let path = denied.iter().find_map(|l| refused_path(l));
    let mut kinds = Vec::new();
    if fs_hit || denied.is_empty() {
        kinds.push(match &path {
            Some(p) => {
                format!("it was refused {p}: --allow-read {p} lets it read and run it, --allow-write DIR write a cache there (never a credential store)")
            }
            None => "files outside the workspace, system paths and the agent home: --allow-read PATH (read, run) or --allow-write DIR (caches)".to_owned(),
        });
    }
    if net_hit || denied.is_empty() {
        kinds.push(
            match network {
                Network::None => "the network: --network gateway-only reaches upstreams through the gateway",
                Network::GatewayOnly => "hosts other than the gateway: add an upstream, list the host in [gateway] pass_through, or --network open (audited)",
                Network::Open => "Unix sockets (ssh-agent, Docker) stay closed in every mode",
            }
            .to_owned(),
        );
    }
    if kinds.is_empty() {
        kinds.push("see the agent's own messages above; the sandbox's rules are in docs/agents.md".to_owned());
    }
    let lead = if denied.is_empty() { "if the agent failed on something the sandbox refused" } else { "the agent reported a refused access" };
    format!("{lead} — {}", kinds.join("; "))
}

/// The absolute path a `… /some/path …: Permission denied` line names, if any.
fn refused_path(line: &str) -> Option<String> {
    line.split([' ', ':', '\'', '"', '`', '(', ')', ','])
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .map(|w| w.trim_end_matches(['.', ';']).to_owned())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustup's proxies in ~/.cargo/bin find their toolchains through $HOME/.rustup; the
    /// agent's $HOME is its own, so RUSTUP_HOME points at the user's, opened read-only.
    #[test]
    fn tool_managers_found_through_home_are_pointed_at_the_users_installation() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let home = root.join("home");
        for p in ["home/.cargo/bin", "home/.rustup/toolchains", "ws", "state"] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        std::fs::write(home.join(".cargo/credentials.toml"), "[registry]\ntoken = \"x\"\n").unwrap();
        let req = Request {
            agent: "coder".into(),
            workspace: root.join("ws"),
            cwd: root.join("ws"),
            command: vec!["true".into()],
            path_var: Some(std::env::join_paths([home.join(".cargo/bin"), PathBuf::from("/usr/bin"), PathBuf::from("/bin")]).unwrap()),
            user_home: Some(home.clone()),
            state: root.join("state"),
            allow_read: vec![],
            allow_write: vec![],
            agent_home: None,
            network: Network::None,
            isolation: IsolationMode::Landlock,
            gateway_addr: "127.0.0.1:7700".into(),
            temp_dirs: vec![],
        };
        let p = match prepare(&req, Path::new("/nonexistent")) {
            Ok(p) => p,
            Err(e) => {
                // Without Landlock nothing is planned; that is the only acceptable failure.
                assert!(sandbox::probe().abi.is_none(), "{e}");
                return;
            }
        };
        assert!(p.env.iter().any(|(k, v)| k == "RUSTUP_HOME" && *v == home.join(".rustup").display().to_string()), "{:?}", p.env);
        assert!(p.spec.rules.iter().any(|r| r.path == home.join(".rustup") && r.access == Access::ReadExec));
        // ~/.cargo itself (with its credentials) stays closed: only its bin directory is open.
        assert!(!p.spec.rules.iter().any(|r| home.join(".cargo/credentials.toml").starts_with(&r.path)), "{:?}", p.spec.rules);
    }

    #[test]
    fn hint_names_the_flag_for_what_was_refused() {
        let h = denied_hint(Network::GatewayOnly, &["cat: /home/u/.nvm/x: Permission denied".into()]);
        assert!(h.contains("--allow-read /home/u/.nvm/x") && !h.contains("--network open"), "{h}");
        let h = denied_hint(Network::GatewayOnly, &["PermissionError: [Errno 13] Permission denied: '/opt/tool/cfg'".into()]);
        assert!(h.contains("/opt/tool/cfg"), "{h}");
        let h = denied_hint(Network::GatewayOnly, &["curl: (7) Failed to connect: Connection refused".into()]);
        assert!(h.contains("--network open") && !h.contains("--allow-read"), "{h}");
        let h = denied_hint(Network::None, &[]);
        assert!(h.contains("--allow-read") && h.contains("--network gateway-only"), "{h}");
    }

    #[test]
    fn gateway_address_needs_a_port() {
        assert_eq!(port_of("127.0.0.1:7700").unwrap(), 7700);
        assert!(port_of("127.0.0.1").unwrap_err().to_string().contains("--gateway"));
    }

    #[tokio::test]
    async fn gateway_check_tells_http_from_silence_and_refusal() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 64];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
        check_gateway(&addr, Duration::from_secs(2)).await.unwrap();
        // A port nobody listens on (bound, then closed).
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        assert!(check_gateway(&gone, Duration::from_secs(2)).await.is_err());
        // A listener that never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let saddr = silent.local_addr().unwrap().to_string();
        let e = check_gateway(&saddr, Duration::from_millis(200)).await.unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        drop(silent);
    }
}
