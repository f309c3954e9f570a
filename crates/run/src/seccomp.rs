//! The seccomp filter every sandboxed agent runs under.
//!
//! This module owns the list of system calls that would open a way around Landlock and
//! the network namespace, and installs it ([`apply`]) on the calling thread, which then
//! execs the agent. Refused calls fail with `EPERM` (the program sees an ordinary
//! permission error); nothing is killed.
//!
//! Refused, and why:
//! * `socket()` for every family but IPv4/IPv6 TCP sockets and netlink: no Unix-domain
//!   sockets (ssh-agent, Docker, D-Bus listen on pathname sockets Landlock cannot hide), no
//!   UDP, no raw or packet sockets, no vsock to a hypervisor. `socketpair()` stays (pipes
//!   between a program's own processes hold nothing);
//! * `io_uring_*`: io_uring performs socket and file operations without the system calls
//!   this filter sees;
//! * `keyctl`, `add_key`, `request_key`: the session keyring the agent inherits can hold
//!   the user's credentials (Kerberos tickets, fscrypt keys);
//! * `unshare`, `setns`, `mount`, `umount2`, `pivot_root`, namespace flags on `clone`, and
//!   `clone3` (answered `ENOSYS`, so libc falls back to `clone`, whose flags are visible):
//!   no new namespaces, so the agent can neither undo the private `/proc` nor re-enter the
//!   host's namespaces.
//!
//! It must never allow less than it documents, and it is applied only to the thread that
//! execs the agent (the supervisor is never filtered).

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter, SeccompRule};

use crate::Error;

const AF_UNIX: u64 = libc::AF_UNIX as u64;
const AF_INET: u64 = libc::AF_INET as u64;
const AF_INET6: u64 = libc::AF_INET6 as u64;
const AF_NETLINK: u64 = libc::AF_NETLINK as u64;
const SOCK_STREAM: u64 = libc::SOCK_STREAM as u64;

/// Namespace flags refused on `clone`.
const NS_FLAGS: [u64; 7] = [
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn cond(arg: u8, op: Op, v: u64) -> Result<Cond, Error> {
    Cond::new(arg, Len::Dword, op, v).map_err(|e| Error::Sandbox(format!("seccomp condition: {e}")))
}

fn rule(conds: Vec<Cond>) -> Result<SeccompRule, Error> {
    SeccompRule::new(conds).map_err(|e| Error::Sandbox(format!("seccomp rule: {e}")))
}

/// `socket(domain, type, …)` calls to refuse: every domain but AF_INET, AF_INET6 (stream
/// only, and datagram with `allow_udp`) and AF_NETLINK.
fn socket_rules(allow_udp: bool) -> Result<Vec<SeccompRule>, Error> {
    let mut v = vec![
        rule(vec![cond(0, Op::Lt, AF_INET)?])?, // AF_UNSPEC, AF_UNIX
        rule(vec![cond(0, Op::Gt, AF_INET)?, cond(0, Op::Lt, AF_INET6)?])?,
        rule(vec![cond(0, Op::Gt, AF_INET6)?, cond(0, Op::Lt, AF_NETLINK)?])?,
        rule(vec![cond(0, Op::Gt, AF_NETLINK)?])?,
    ];
    const _: () = assert!(AF_UNIX < AF_INET && AF_INET < AF_INET6 && AF_INET6 < AF_NETLINK);
    // For IP sockets: any type but SOCK_STREAM (the low 4 bits; flags such as
    // SOCK_CLOEXEC sit above them).
    for domain in [AF_INET, AF_INET6] {
        v.push(rule(vec![cond(0, Op::Eq, domain)?, cond(1, Op::MaskedEq(0xf), 0)?])?);
        for t in 2..16u64 {
            if allow_udp && t == libc::SOCK_DGRAM as u64 {
                continue;
            }
            v.push(rule(vec![cond(0, Op::Eq, domain)?, cond(1, Op::MaskedEq(0xf), t)?])?);
        }
        // A stream socket that is not TCP (SCTP, MPTCP): Landlock's port rules are about
        // TCP, so without the network namespace these would reach any port.
        v.push(rule(vec![
            cond(0, Op::Eq, domain)?,
            cond(1, Op::MaskedEq(0xf), SOCK_STREAM)?,
            cond(2, Op::Ne, 0)?,
            cond(2, Op::Ne, libc::IPPROTO_TCP as u64)?,
        ])?);
    }
    const _: () = assert!(SOCK_STREAM == 1);
    Ok(v)
}

fn clone_rules() -> Result<Vec<SeccompRule>, Error> {
    NS_FLAGS.iter().map(|f| rule(vec![cond(0, Op::MaskedEq(*f), *f)?])).collect()
}

/// The syscalls refused outright (no argument condition).
const REFUSED: &[i64] = &[
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsmount,
];

fn arch() -> Result<seccompiler::TargetArch, Error> {
    std::env::consts::ARCH.try_into().map_err(|e| Error::Sandbox(format!("seccomp does not support this architecture: {e:?}")))
}

/// On x86_64 the x32 ABI reaches the same calls under numbers with bit 30 set, and the
/// filter's architecture check does not tell them apart: refuse those numbers too.
fn with_x32(n: i64) -> Vec<i64> {
    if cfg!(target_arch = "x86_64") { vec![n, n | 0x4000_0000] } else { vec![n] }
}

/// The two BPF programs: refusals answered `EPERM`, and `clone3` answered `ENOSYS`.
pub fn programs(allow_udp: bool) -> Result<[BpfProgram; 2], Error> {
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for n in with_x32(libc::SYS_socket) {
        deny.insert(n, socket_rules(allow_udp)?);
    }
    for n in with_x32(libc::SYS_clone) {
        deny.insert(n, clone_rules()?);
    }
    for &s in REFUSED {
        for n in with_x32(s) {
            deny.insert(n, vec![]);
        }
    }
    let compile = |rules, action| -> Result<BpfProgram, Error> {
        let f = SeccompFilter::new(rules, SeccompAction::Allow, action, arch()?).map_err(|e| Error::Sandbox(format!("seccomp filter: {e}")))?;
        f.try_into().map_err(|e: seccompiler::BackendError| Error::Sandbox(format!("seccomp filter: {e}")))
    };
    let mut nosys = BTreeMap::new();
    for n in with_x32(libc::SYS_clone3) {
        nosys.insert(n, vec![]);
    }
    Ok([compile(deny, SeccompAction::Errno(libc::EPERM as u32))?, compile(nosys, SeccompAction::Errno(libc::ENOSYS as u32))?])
}

/// Install the filter on the calling thread (it needs `no_new_privs`, which Landlock's
/// `restrict_self` has already set). Everything the thread execs afterwards inherits it.
pub fn apply(allow_udp: bool) -> Result<(), Error> {
    rustix::thread::set_no_new_privs(true).map_err(|e| Error::Sandbox(format!("cannot set no_new_privs: {e}")))?;
    for p in programs(allow_udp)? {
        seccompiler::apply_filter(&p).map_err(|e| Error::Sandbox(format!("cannot install the seccomp filter: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_compile() {
        let [deny, nosys] = programs(false).unwrap();
        assert!(programs(true).unwrap()[0].len() < deny.len());
        assert!(deny.len() > 40, "{}", deny.len());
        assert!(!nosys.is_empty());
    }

    /// Installs the real filter on a throwaway thread and checks what it refuses.
    #[test]
    fn filtered_thread_cannot_open_unix_udp_or_raw_sockets_but_can_open_tcp() {
        use rustix::net::{AddressFamily, SocketType, socket};
        let r = std::thread::spawn(|| {
            apply(false).unwrap();
            (
                socket(AddressFamily::UNIX, SocketType::STREAM, None).err(),
                socket(AddressFamily::INET, SocketType::DGRAM, None).err(),
                socket(AddressFamily::INET6, SocketType::DGRAM, None).err(),
                socket(AddressFamily::INET, SocketType::RAW, None).err(),
                socket(AddressFamily::PACKET, SocketType::RAW, None).err(),
                socket(AddressFamily::INET, SocketType::STREAM, None).map(|_| ()),
                socket(AddressFamily::INET, SocketType::STREAM, Some(rustix::net::ipproto::TCP)).map(|_| ()),
                socket(AddressFamily::INET, SocketType::STREAM, Some(rustix::net::ipproto::SCTP)).err(),
                socket(AddressFamily::INET6, SocketType::STREAM, Some(rustix::net::ipproto::MPTCP)).err(),
                rustix::net::socketpair(AddressFamily::UNIX, SocketType::STREAM, rustix::net::SocketFlags::CLOEXEC, None).map(|_| ()),
                std::thread::spawn(|| 7).join().unwrap(), // threads still start (clone3 → clone)
            )
        })
        .join()
        .unwrap();
        let eperm = Some(rustix::io::Errno::PERM);
        assert_eq!(r.0, eperm, "unix");
        assert_eq!(r.1, eperm, "udp");
        assert_eq!(r.2, eperm, "udp6");
        assert_eq!(r.3, eperm, "raw");
        assert_eq!(r.4, eperm, "packet");
        r.5.unwrap();
        r.6.unwrap();
        assert_eq!(r.7, eperm, "sctp");
        assert_eq!(r.8, eperm, "mptcp");
        r.9.unwrap();
        assert_eq!(r.10, 7);
        // This thread is not filtered.
        assert!(socket(AddressFamily::UNIX, SocketType::STREAM, None).is_ok());
    }
}
