//! Supervising the agent: the trampoline that sandboxes and execs it, signal
//! forwarding, and exit-status pass-through.
//!
//! This module owns the two halves of a launch:
//! * [`trampoline`] runs in the child (`airlock __sandbox-exec`): it arranges to die with
//!   its supervisor, applies the Landlock [`Spec`](crate::sandbox::Spec) to itself and
//!   execs the agent — so the agent and everything it starts inherit the sandbox while
//!   the supervisor stays unrestricted;
//! * [`supervise`] runs in the supervisor: it forwards SIGINT/SIGTERM/SIGHUP, kills the
//!   agent if it outlives a termination request by [`KILL_GRACE`], and reports how it ended.
//!
//! It must never end the supervisor without returning: every way out (normal exit, the
//! agent killed, the supervisor interrupted) comes back to the caller, which revokes the
//! task. It uses no `unsafe`: the sandbox is applied in the re-executed child, not in a
//! `pre_exec` hook.

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::signal::unix::{SignalKind, signal};

use crate::Error;
use crate::sandbox::{self, Spec};

/// How long the agent gets to exit after airlock forwards SIGTERM or SIGHUP before it is killed.
pub const KILL_GRACE: Duration = Duration::from_secs(10);

/// Most stderr lines about refused accesses kept for the closing hint.
pub const MAX_DENIED_LINES: usize = 20;

/// Whether a line the agent printed reports a refused access.
pub fn mentions_refusal(line: &str) -> bool {
    const WORDS: [&str; 8] = [
        "permission denied",
        "operation not permitted",
        "eacces",
        "eperm",
        "permissionerror",
        "connection refused",
        "network is unreachable",
        "read-only file system",
    ];
    let l = line.to_ascii_lowercase();
    WORDS.iter().any(|w| l.contains(w))
}

/// The hidden subcommand the supervisor re-executes itself with.
pub const TRAMPOLINE_SUBCOMMAND: &str = "__sandbox-exec";

/// Exit code of the trampoline when the sandbox could not be applied (nothing ran).
pub const EXIT_SANDBOX_FAILED: u8 = 125;
/// Exit code when the agent's program exists but could not be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// Exit code when the agent's program was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// The signal handlers airlock installs before it starts a task, so that an interrupt
/// at any point afterwards reaches [`supervise`] instead of killing airlock.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install handlers for SIGINT, SIGTERM and SIGHUP (needs a tokio runtime).
    pub fn install() -> Result<Self, Error> {
        let s = |k: SignalKind| signal(k).map_err(|e| Error::Signal(format!("cannot install a signal handler: {e}")));
        Ok(Self { int: s(SignalKind::interrupt())?, term: s(SignalKind::terminate())?, hup: s(SignalKind::hangup())? })
    }
}

/// How the agent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Terminating signal, if it was killed by one.
    pub signal: Option<i32>,
    /// Signals airlock itself received while the agent ran (forwarded or not).
    pub received: Vec<i32>,
    /// Whether airlock killed the agent after [`KILL_GRACE`].
    pub killed_after_grace: bool,
    /// Lines the agent wrote to stderr that mention a refused access (`Permission denied`,
    /// `Operation not permitted`, `Connection refused`…), when its stderr was not a
    /// terminal and so could be passed through airlock (at most [`MAX_DENIED_LINES`]).
    pub denied: Vec<String>,
}

impl Exit {
    /// The code to exit airlock with: the agent's code, or 128+signal.
    pub fn exit_code(&self) -> u8 {
        match (self.code, self.signal) {
            (Some(c), _) => (c & 0xff) as u8,
            (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
            (None, None) => 1,
        }
    }

    /// A short human description: `exited with code 3`, `killed by signal 9 (SIGKILL)`.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by signal {s}{}", signal_name(s).map(|n| format!(" ({n})")).unwrap_or_default()),
            (None, None) => "ended in an unknown way".into(),
        }
    }
}

fn signal_name(s: i32) -> Option<&'static str> {
    Some(match s {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Whether a SIGINT airlock received most likely came from the terminal, in which case
/// the agent (same foreground process group) received it too and must not get it twice.
fn sigint_from_terminal() -> bool {
    rustix::termios::tcgetpgrp(std::io::stdin()).is_ok_and(|fg| fg == rustix::process::getpgrp())
}

fn send(pid: Pid, sig: Signal) {
    // ESRCH (already gone) is fine: wait() reports how it ended.
    let _ = rustix::process::kill_process(pid, sig);
}

/// Spawn `cmd` and supervise it until it ends.
///
/// Call from the thread that will stay alive for the agent's lifetime (the runtime's
/// `block_on` thread): the agent's parent-death signal is tied to the spawning thread.
pub async fn supervise(mut cmd: tokio::process::Command, signals: &mut Signals) -> Result<Exit, Error> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.kill_on_drop(true);
    // When airlock's stderr is not a terminal, the agent's stderr passes through airlock,
    // which keeps the lines about refused accesses for the closing hint. On a terminal it
    // is left alone: the agent must see a terminal where it would have seen one.
    let tee = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    if tee {
        cmd.stderr(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn { program, source })?;
    let denied_lines = child.stderr.take().map(|err| tokio::spawn(pass_stderr(err)));
    let pid = child.id().and_then(|id| Pid::from_raw(id as i32)).ok_or_else(|| Error::Signal("the agent has no process id".into()))?;
    let mut received = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut killed_after_grace = false;
    let status = loop {
        let grace = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            st = child.wait() => break st.map_err(|e| Error::Signal(format!("cannot wait for the agent: {e}")))?,
            _ = signals.int.recv() => {
                received.push(Signal::INT.as_raw());
                if !sigint_from_terminal() {
                    send(pid, Signal::INT);
                }
            }
            _ = signals.term.recv() => {
                received.push(Signal::TERM.as_raw());
                send(pid, Signal::TERM);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + KILL_GRACE);
            }
            _ = signals.hup.recv() => {
                received.push(Signal::HUP.as_raw());
                send(pid, Signal::HUP);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + KILL_GRACE);
            }
            _ = grace => {
                send(pid, Signal::KILL);
                killed_after_grace = true;
                deadline = None;
            }
        }
    };
    let denied = match denied_lines {
        Some(h) => tokio::time::timeout(Duration::from_secs(2), h).await.ok().and_then(Result::ok).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Exit { code: status.code(), signal: status.signal(), received, killed_after_grace, denied })
}

/// Copy the agent's stderr to airlock's, keeping the lines that report a refused access.
async fn pass_stderr(mut err: tokio::process::ChildStderr) -> Vec<String> {
    use std::io::Write as _;
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match err.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Small writes to airlock's own stderr (a pipe or file: it is not a terminal here).
        let _ = std::io::stderr().lock().write_all(&buf[..n]);
        for &b in &buf[..n] {
            if b == b'\n' {
                let l = String::from_utf8_lossy(&line).into_owned();
                if kept.len() < MAX_DENIED_LINES && mentions_refusal(&l) {
                    kept.push(l.chars().take(300).collect());
                }
                line.clear();
            } else if line.len() < 4096 {
                line.push(b);
            }
        }
    }
    kept
}

/// How a child ended, as an exit code for the stage above it: its code, or 128 + signal.
fn status_code(code: Option<i32>, signal: Option<i32>) -> u8 {
    match (code, signal) {
        (Some(c), _) => (c & 0xff) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

fn die_with_parent() -> Result<(), Error> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL)).map_err(|e| Error::Sandbox(format!("cannot tie the agent's life to airlock's: {e}")))
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::Sandbox(format!("cannot start the trampoline's runtime: {e}")))
}

/// The first stage of the child side (`airlock __sandbox-exec`): die with the supervisor,
/// enter the namespaces the spec asks for, start the gateway relay inside them, and run the
/// second stage ([`init`]) as the first process of the new PID namespace. Returns the exit
/// code to leave with (the agent's, passed up), or the code and error if nothing could run.
///
/// Must be called while the process is still single-threaded (before any runtime exists).
/// `None` (`--no-sandbox`) execs the agent directly.
pub fn trampoline(spec: Option<&Spec>, supervisor: i32, argv: &[OsString]) -> (u8, Option<Error>) {
    let Some((program, args)) = argv.split_first() else {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("no command to run".into())));
    };
    // If the supervisor dies (even by SIGKILL), the agent dies too instead of running on
    // with a token nobody will revoke. Check the parent afterwards to close the race.
    if let Err(e) = die_with_parent() {
        return (EXIT_SANDBOX_FAILED, Some(e));
    }
    if rustix::process::getppid().map(Pid::as_raw_nonzero).map(|p| p.get()) != Some(supervisor) {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("the airlock supervisor is gone; not starting the agent".into())));
    }
    let Some(spec) = spec else {
        let err = std::process::Command::new(program).args(args).exec();
        return exec_failed(program, err);
    };
    let iso = &spec.isolation;
    match crate::isolate::enter(iso.net_ns, iso.pid_ns) {
        Ok(entered) if entered.user_ns && iso.pid_ns => {
            if let Err(e) = crate::isolate::pass_mount_capability() {
                return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string())));
            }
        }
        Ok(_) => {}
        Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string()))),
    }
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => return (EXIT_SANDBOX_FAILED, Some(e)),
    };
    rt.block_on(async {
        let relay = match &iso.relay {
            Some(r) => match crate::relay::bind_inside(r.port).await {
                Ok(l) => Some((l, r.bridge.clone())),
                Err(e) => return (EXIT_SANDBOX_FAILED, Some(e)),
            },
            None => None,
        };
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(format!("cannot locate the airlock binary: {e}")))),
        };
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg(TRAMPOLINE_SUBCOMMAND).arg("--init").arg("--supervisor").arg(rustix::process::getpid().as_raw_nonzero().get().to_string());
        cmd.arg("--spec").arg(spec.to_json()).arg("--").args(argv).kill_on_drop(true);
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => return (EXIT_SANDBOX_FAILED, Some(e)),
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(format!("cannot start the sandbox's init: {e}")))),
        };
        if let Some((l, bridge)) = relay {
            tokio::spawn(crate::relay::serve_inside(l, bridge));
        }
        let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32)) else {
            return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("the sandbox's init has no process id".into())));
        };
        loop {
            tokio::select! {
                st = child.wait() => {
                    return match st {
                        Ok(st) => {
                            let code = status_code(st.code(), st.signal());
                            reraise(code);
                            (code, None)
                        }
                        Err(e) => (EXIT_SANDBOX_FAILED, Some(Error::Signal(format!("cannot wait for the sandbox's init: {e}")))),
                    };
                }
                // Like the supervisor: a Ctrl-C on the terminal reached the agent itself (same
                // process group); passing it on again would make one Ctrl-C two or three. An
                // interrupt from elsewhere goes to the init as SIGUSR1: inside its PID
                // namespace the init cannot tell the terminal's SIGINT from ours.
                _ = signals.int.recv() => if !sigint_from_terminal() { send(pid, Signal::USR1) },
                _ = signals.term.recv() => send(pid, Signal::TERM),
                _ = signals.hup.recv() => send(pid, Signal::HUP),
            }
        }
    })
}

/// The init passes "killed by signal S" up as exit code 128 + S (the first process of a PID
/// namespace cannot die of a signal sent from inside). Die of the same signal, so the
/// supervisor reports it as such — except the ones this stage handles (and forwards), which
/// stay an exit code.
fn reraise(code: u8) {
    let Some(sig) = code.checked_sub(128).filter(|s| (1..=31).contains(s)) else { return };
    if matches!(i32::from(sig), 1 | 2 | 15) {
        return;
    }
    if let Some(sig) = Signal::from_named_raw(i32::from(sig)) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last stage (`airlock __sandbox-exec --apply`): die with the init, apply Landlock and
/// seccomp to this process, exec the agent. Returns only on failure.
pub fn apply_and_exec(spec: &Spec, init: i32, argv: &[OsString]) -> (u8, Option<Error>) {
    let Some((program, args)) = argv.split_first() else {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("no command to run".into())));
    };
    if let Err(e) = die_with_parent() {
        return (EXIT_SANDBOX_FAILED, Some(e));
    }
    if rustix::process::getppid().map(Pid::as_raw_nonzero).map(|p| p.get()) != Some(init) {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("the sandbox's init is gone; not starting the agent".into())));
    }
    // The init dropped every capability (bounding and ambient sets included), so this exec
    // started with none; dropping again verifies it right before Landlock, where a mistake
    // in the init would otherwise go unnoticed.
    if let Err(e) = crate::isolate::drop_all_capabilities() {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string())));
    }
    if let Err(e) = sandbox::apply(spec) {
        return (EXIT_SANDBOX_FAILED, Some(e));
    }
    if spec.isolation.seccomp
        && let Err(e) = crate::seccomp::apply(spec.isolation.allow_udp)
    {
        return (EXIT_SANDBOX_FAILED, Some(e));
    }
    let err = std::process::Command::new(program).args(args).exec();
    exec_failed(program, err)
}

fn exec_failed(program: &OsString, err: std::io::Error) -> (u8, Option<Error>) {
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXECUTE,
    };
    (code, Some(Error::Exec { program: program.to_string_lossy().into_owned(), source: err }))
}

/// The second stage (`airlock __sandbox-exec --init`), the first process of the agent's PID
/// namespace: mount a private `/proc`, drop every capability, start the agent through
/// [`apply_and_exec`], pass signals on, reap every orphan, and leave with the agent's exit
/// code. When it leaves, the kernel ends every process left in the namespace — a
/// daemon the agent forked dies with the task.
pub fn init(spec: &Spec, argv: &[OsString]) -> (u8, Option<Error>) {
    let Some((program, args)) = argv.split_first() else {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("no command to run".into())));
    };
    if let Err(e) = die_with_parent() {
        return (EXIT_SANDBOX_FAILED, Some(e));
    }
    // Hold the airlock binary open before the private /tmp may cover its path (an airlock
    // installed or built under /tmp): the third stage is started through this descriptor.
    let exe_file = match std::fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(format!("cannot open the airlock binary: {e}")))),
    };
    let pid1 = rustix::process::getpid().as_raw_nonzero().get() == 1;
    if spec.isolation.pid_ns {
        if !pid1 {
            return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("the sandbox's init is not the first process of its PID namespace".into())));
        }
        if spec.isolation.private_tmp {
            // Every rule path under /tmp or /dev/shm comes back; nothing else does.
            let keep: Vec<std::path::PathBuf> = spec.rules.iter().map(|r| r.path.clone()).collect();
            if let Err(e) = crate::isolate::private_mounts(sandbox::FRESH_MOUNTS, &keep) {
                return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string())));
            }
        }
        if let Err(e) = crate::isolate::remount_proc() {
            return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string())));
        }
    } else if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(format!("cannot become the agent's subreaper: {e}"))));
    }
    if let Err(e) = crate::isolate::drop_all_capabilities() {
        return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(e.to_string())));
    }
    // The init stays outside the Landlock domain: the agent can then neither signal nor
    // trace it (Landlock scopes both), in every isolation mode. The third stage applies
    // the sandbox to itself and execs the agent.
    // exec through the held descriptor (closed on exec; the kernel has opened the file by then).
    let exe = std::path::PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&exe_file)));
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => return (EXIT_SANDBOX_FAILED, Some(e)),
    };
    rt.block_on(async {
        let (mut signals, mut chld, mut usr1) = match (Signals::install(), signal(SignalKind::child()), signal(SignalKind::user_defined1())) {
            (Ok(s), Ok(c), Ok(u)) => (s, c, u),
            (Err(e), _, _) => return (EXIT_SANDBOX_FAILED, Some(e)),
            (_, Err(e), _) | (_, _, Err(e)) => return (EXIT_SANDBOX_FAILED, Some(Error::Signal(format!("cannot watch signals: {e}")))),
        };
        let me = rustix::process::getpid().as_raw_nonzero().get().to_string();
        let child = match std::process::Command::new(&exe)
            .arg(TRAMPOLINE_SUBCOMMAND)
            .arg("--apply")
            .arg("--supervisor")
            .arg(me)
            .arg("--spec")
            .arg(spec.to_json())
            .arg("--")
            .arg(program)
            .args(args)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox(format!("cannot start the sandbox's last stage: {e}")))),
        };
        let Some(agent) = Pid::from_raw(child.id() as i32) else {
            return (EXIT_SANDBOX_FAILED, Some(Error::Sandbox("the agent has no process id".into())));
        };
        drop(child); // reaped below, with every orphan
        loop {
            // Reap everything that has ended; the agent's status ends the loop.
            loop {
                // `wait` is waitpid(-1): any child. (`waitpid(None)` is waitpid(0), this
                // process group only — and an interactive shell moves into its own.)
                match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                    Ok(Some((pid, st))) if pid == agent => return (status_code(st.exit_status(), st.terminating_signal()), None),
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => return (EXIT_SANDBOX_FAILED, Some(Error::Signal(format!("the agent vanished ({e})")))),
                }
            }
            tokio::select! {
                _ = chld.recv() => {}
                // SIGINT reaching the init came from the terminal (the agent got it too);
                // an interrupt to pass on arrives from the first stage as SIGUSR1.
                _ = signals.int.recv() => {}
                _ = usr1.recv() => send(agent, Signal::INT),
                _ = signals.term.recv() => send(agent, Signal::TERM),
                _ = signals.hup.recv() => send(agent, Signal::HUP),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through() {
        let e = |code, signal| Exit { code, signal, received: vec![], killed_after_grace: false, denied: vec![] };
        assert_eq!(e(Some(0), None).exit_code(), 0);
        assert_eq!(e(Some(3), None).exit_code(), 3);
        assert_eq!(e(Some(255), None).exit_code(), 255);
        assert_eq!(e(None, Some(9)).exit_code(), 137);
        assert_eq!(e(None, Some(15)).exit_code(), 143);
        assert_eq!(e(None, Some(9)).describe(), "killed by signal 9 (SIGKILL)");
        assert_eq!(e(Some(3), None).describe(), "exited with code 3");
    }
}
