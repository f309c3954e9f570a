//! Namespaces and capabilities: the agent's own network, PID and mount namespace, and a
//! process that holds no capability.
//!
//! This module owns the kernel calls that take the agent out of the host's view:
//! * [`enter`] (the trampoline's first stage, single-threaded): a new network namespace
//!   (only a loopback interface: no route to any other host, no UDP or raw socket reaches
//!   anything outside), a new PID namespace for the children, a new mount namespace, and —
//!   when not root — a user namespace that maps the caller's own uid and gid, so none of
//!   it needs privilege;
//! * [`loopback_up`]: one `RTM_NEWLINK` netlink message that brings `lo` up;
//! * [`pass_mount_capability`]: keeps `CAP_SYS_ADMIN` across the exec into the second stage
//!   (ambient set), which needs it to mount a fresh `/proc`;
//! * [`remount_proc`] (second stage, PID 1 of the new namespace): a `/proc` that shows only
//!   the sandbox's own processes, so no other process's `environ`, memory or descriptors can
//!   even be named;
//! * [`drop_all_capabilities`]: empties the bounding, ambient, inheritable, permitted and
//!   effective sets, so an agent started as root is an ordinary process.
//!
//! It must never leave the agent with a capability, and never half-enter: a failure is
//! returned before anything is started, and the caller decides whether to fall back (with a
//! warning naming what is not covered) or refuse.

use std::io;

use rustix::thread::{CapabilitySet, CapabilitySets};

/// Which namespaces [`enter`] created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entered {
    /// Whether a user namespace was created (the caller was not root).
    pub user_ns: bool,
}

/// Why the namespaces could not be entered (the kernel's answer, for the warning).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NsError {
    /// `unshare` was refused (user namespaces disabled, e.g. Ubuntu's AppArmor restriction,
    /// `kernel.unprivileged_userns_clone=0`, or a container without the privilege).
    #[error("the kernel refused new namespaces ({0}); unprivileged user namespaces may be disabled")]
    Unshare(io::Error),
    /// Writing the uid/gid map failed.
    #[error("cannot map the user into its namespace ({what}: {source})")]
    Map {
        /// `uid_map`, `gid_map` or `setgroups`.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The loopback interface could not be brought up.
    #[error("cannot bring up the loopback interface in the agent's network namespace: {0}")]
    Loopback(io::Error),
    /// A capability operation failed.
    #[error("cannot {what}: {source}")]
    Capability {
        /// What was attempted.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// `/proc` could not be mounted.
    #[error("cannot mount a private /proc: {0}")]
    Proc(io::Error),
    /// The private `/tmp`/`/dev/shm` could not be set up.
    #[error("cannot give the agent a private /tmp ({what}: {source})")]
    Tmp {
        /// The step that failed.
        what: String,
        /// Why.
        source: io::Error,
    },
}

/// Enter new network, PID (for children) and mount namespaces, plus a user namespace when
/// not root, and bring up loopback. Must be called while the process is single-threaded
/// (before any async runtime exists): the kernel refuses a user namespace otherwise.
///
/// `net`: a network namespace; `pid`: PID and mount namespaces.
pub fn enter(net: bool, pid: bool) -> Result<Entered, NsError> {
    use nix::sched::{CloneFlags, unshare};
    let uid = rustix::process::getuid();
    let gid = rustix::process::getgid();
    let root = uid.is_root();
    let mut flags = CloneFlags::empty();
    if net {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if pid {
        flags |= CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS;
    }
    if flags.is_empty() {
        return Ok(Entered { user_ns: false });
    }
    if !root {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).map_err(|e| NsError::Unshare(io::Error::from_raw_os_error(e as i32)))?;
    if !root {
        let w = |what: &'static str, text: String| std::fs::write(format!("/proc/self/{what}"), text).map_err(|source| NsError::Map { what, source });
        w("setgroups", "deny".into())?;
        w("uid_map", format!("{0} {0} 1\n", uid.as_raw()))?;
        w("gid_map", format!("{0} {0} 1\n", gid.as_raw()))?;
    }
    if net {
        loopback_up().map_err(NsError::Loopback)?;
    }
    Ok(Entered { user_ns: !root })
}

/// Bring the loopback interface up with one `RTM_NEWLINK` request on a route netlink socket.
///
/// Hand-written on purpose: it is one fixed 32-byte message and its acknowledgement, where a
/// netlink crate (rtnetlink and its protocol stack) would add an async connection and a
/// dozen crates to the sandbox's start-up path for this single call.
pub fn loopback_up() -> io::Result<()> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netdevice, netlink::SocketAddrNetlink};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
    let index = netdevice::name_to_index(&fd, "lo")?;
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes()); // nlmsg_len
    msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes()); // nlmsg_type
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes()); // nlmsg_flags
    msg.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    msg.extend_from_slice(&[0u8, 0u8]); // ifi_family (AF_UNSPEC), padding
    msg.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    msg.extend_from_slice(&(index as i32).to_ne_bytes()); // ifi_index
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_flags
    msg.extend_from_slice(&IFF_UP.to_ne_bytes()); // ifi_change
    rustix::net::sendto(&fd, &msg, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
    let mut buf = [0u8; 256];
    let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
    if n < 20 || u16::from_ne_bytes([buf[4], buf[5]]) != NLMSG_ERROR {
        return Err(io::Error::other("unexpected netlink answer"));
    }
    let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
    if code != 0 {
        return Err(io::Error::from_raw_os_error(-code));
    }
    Ok(())
}

/// Raise `CAP_SYS_ADMIN` into the ambient set so the next exec (the trampoline's second
/// stage) keeps it: inside a user namespace a non-root uid loses every capability at exec.
pub fn pass_mount_capability() -> Result<(), NsError> {
    let cap = |what, source| NsError::Capability { what, source };
    let mut sets = rustix::thread::capabilities(None).map_err(|e| cap("read capabilities", e.into()))?;
    sets.inheritable |= CapabilitySet::SYS_ADMIN;
    rustix::thread::set_capabilities(None, sets).map_err(|e| cap("set the inheritable capability", e.into()))?;
    rustix::thread::configure_capability_in_ambient_set(CapabilitySet::SYS_ADMIN, true).map_err(|e| cap("raise the ambient capability", e.into()))
}

/// Make every mount private to this namespace and mount a fresh `/proc` for the new PID
/// namespace. Call from PID 1 of that namespace.
pub fn remount_proc() -> Result<(), NsError> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_change};
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(|e| NsError::Proc(e.into()))?;
    mount("proc", "/proc", "proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None).map_err(|e| NsError::Proc(e.into()))
}

/// In a mount namespace of this process's own, put a fresh tmpfs on each of `dirs` and
/// bind-mount back every path of `keep` that lies beneath one (the workspace, the agent's
/// temp dir…), so nothing else the host has there is visible. Call while single-threaded,
/// with `CAP_SYS_ADMIN`.
pub fn private_mounts(dirs: &[&str], keep: &[std::path::PathBuf]) -> Result<(), NsError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_change};
    use std::path::Path;
    let err = |what: String, e: io::Error| NsError::Tmp { what, source: e };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| err("a mount namespace".into(), io::Error::from_raw_os_error(e as i32)))?;
    mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(|e| err("private mounts".into(), e.into()))?;
    for dir in dirs {
        let d = Path::new(dir);
        if !d.is_dir() {
            continue;
        }
        // Hold every kept path open first: the tmpfs is about to cover them.
        let mut held = Vec::new();
        for k in keep.iter().filter(|k| k.starts_with(d) && k.as_path() != d) {
            let fd = rustix::fs::open(k, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| err(format!("open {}", k.display()), e.into()))?;
            let is_dir = std::fs::metadata(k).map(|m| m.is_dir()).unwrap_or(false);
            held.push((k.clone(), fd, is_dir));
        }
        mount("tmpfs", d, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, c"mode=1777").map_err(|e| err(format!("a tmpfs on {dir}"), e.into()))?;
        // Shallow paths first, so a nested kept path is mounted inside its parent's bind.
        held.sort_by_key(|(k, _, _)| k.components().count());
        for (k, fd, is_dir) in held {
            let made = if is_dir {
                std::fs::create_dir_all(&k)
            } else {
                k.parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&k).map(drop))
            };
            made.map_err(|e| err(format!("recreate {}", k.display()), e))?;
            let src = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            mount_bind(src.as_str(), &k).map_err(|e| err(format!("bind {} back", k.display()), e.into()))?;
        }
    }
    Ok(())
}

/// Drop every capability from every set, bounding set first, so neither this process nor
/// anything it execs (even as uid 0, even a setuid binary) can hold one.
pub fn drop_all_capabilities() -> Result<(), NsError> {
    let cap = |what, source| NsError::Capability { what, source };
    for bit in 0..64u32 {
        let c = CapabilitySet::from_bits_retain(1u64 << bit);
        if !rustix::thread::capability_is_in_bounding_set(c).unwrap_or(false) {
            continue; // not held, or not a capability this kernel knows (EINVAL)
        }
        if let Err(e) = rustix::thread::remove_capability_from_bounding_set(c) {
            // EPERM: no CAP_SETPCAP, i.e. an unprivileged process whose bounding set cannot
            // matter (it has no capability to gain one back with); anything else is a failure.
            if e != rustix::io::Errno::PERM {
                return Err(cap("drop a capability from the bounding set", e.into()));
            }
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(|e| cap("clear the ambient capabilities", e.into()))?;
    let empty = CapabilitySets { effective: CapabilitySet::empty(), permitted: CapabilitySet::empty(), inheritable: CapabilitySet::empty() };
    rustix::thread::set_capabilities(None, empty).map_err(|e| cap("clear the capability sets", e.into()))?;
    let now = rustix::thread::capabilities(None).map_err(|e| cap("read capabilities", e.into()))?;
    if !now.effective.is_empty() || !now.permitted.is_empty() {
        return Err(cap("drop every capability", io::Error::other("some remain")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_message_is_refused_outside_a_namespace_without_privilege_or_succeeds() {
        // In the host namespace `lo` is already up: as root the request succeeds (idempotent);
        // unprivileged it is refused with EPERM. Either way the answer is parsed, not ignored.
        match loopback_up() {
            Ok(()) => assert!(rustix::process::getuid().is_root()),
            Err(e) => assert_eq!(e.raw_os_error(), Some(1), "{e}"),
        }
    }
}
