//! Every way out of `airlock run`'s sandbox that issue 10 reproduced, tried from inside.
//!
//! Each test first shows the way out works without the sandbox (`--no-sandbox --network
//! open`, the control), then that the default sandbox refuses it. Everything targets
//! 127.0.0.0/8 or sockets the test itself creates.

use std::io::Write as _;
use std::os::unix::net::UnixListener;
use std::process::Stdio;

use crate::run::{Agent, fake_gateway, host_pid_of};

const PY: &str = "/usr/bin/python3";
const CONTROL: &[&str] = &["--no-sandbox", "--network", "open"];

/// A Unix-socket "agent" (ssh-agent, Docker) that hands a secret to whoever connects.
fn secret_socket(listener: UnixListener) {
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"AGENT-SECRET-0451");
        }
    });
}

#[test]
fn unix_sockets_in_hidden_directories_and_abstract_ones_are_unreachable() {
    let a = Agent::new();
    let dir = a.home().join(".hidden-agent");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.sock");
    secret_socket(UnixListener::bind(&path).unwrap());
    let abstract_name = format!("airlock-test-{}", std::process::id());
    {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap();
        secret_socket(UnixListener::bind_addr(&addr).unwrap());
    }
    let script = format!(
        r#"{PY} -c '
import socket
for target in ["{path}", "\0{abstract_name}"]:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(target); print("got", s.recv(64).decode())
    except OSError as e:
        print("refused", e.errno)
'"#,
        path = path.display()
    );
    let control = a.run(CONTROL, &script).ok();
    assert_eq!(control.stdout.matches("got AGENT-SECRET-0451").count(), 2, "control: {}\n{}", control.stdout, control.stderr);
    for extra in [&[][..], &["--isolation", "landlock"][..]] {
        let r = a.run(extra, &script).ok();
        assert!(!r.stdout.contains("AGENT-SECRET"), "{extra:?}: {}", r.stdout);
        assert_eq!(r.stdout.matches("refused 1").count(), 2, "{extra:?}: {}\n{}", r.stdout, r.stderr);
    }
}

#[test]
fn udp_leaves_nothing_even_to_loopback() {
    let a = Agent::new();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
    let port = sink.local_addr().unwrap().port();
    let script = format!(
        r#"{PY} -c '
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"exfil", ("127.0.0.1", {port})); print("sent")
except OSError as e:
    print("refused", e.errno)
'"#
    );
    let control = a.run(CONTROL, &script).ok();
    assert!(control.stdout.contains("sent"), "{}", control.stderr);
    let mut b = [0u8; 16];
    let n = sink.recv(&mut b).unwrap();
    assert_eq!(&b[..n], b"exfil");
    let gateway = fake_gateway("127.0.0.1");
    let gw = gateway.local_addr().unwrap().to_string();
    for extra in
        [&["--network", "gateway-only", "--gateway", &gw][..], &["--network", "gateway-only", "--gateway", &gw, "--isolation", "landlock"][..], &[][..]]
    {
        let r = a.run(extra, &script).ok();
        assert!(r.stdout.contains("refused 1"), "{extra:?}: {}\n{}", r.stdout, r.stderr);
        assert!(sink.recv(&mut b).is_err(), "{extra:?}: a datagram arrived");
    }
}

#[test]
fn another_loopback_address_on_the_gateways_port_is_not_the_gateway() {
    let a = Agent::new();
    let gateway = fake_gateway("127.0.0.1");
    let port = gateway.local_addr().unwrap().port();
    // Something else listening on the same port of another loopback address.
    let impostor = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
    std::thread::spawn(move || {
        for mut s in impostor.incoming().flatten() {
            let _ = s.write_all(b"IMPOSTOR");
        }
    });
    let gw = format!("127.0.0.1:{port}");
    let script = format!(r#"bash -c 'exec 3<>/dev/tcp/127.0.0.2/{port} && head -c 8 <&3 && echo'; echo "rc=$?""#);
    let control = a.run(&["--network", "open"], &script).ok();
    assert!(control.stdout.contains("IMPOSTOR"), "control: {}\n{}", control.stdout, control.stderr);
    let r = a.run(&["--network", "gateway-only", "--gateway", &gw], &script).ok();
    assert!(!r.stdout.contains("IMPOSTOR"), "{}", r.stdout);
    assert!(r.stderr.contains("Connection refused"), "{}", r.stderr);
    // And the gateway itself answers through the relay at the address the agent is given.
    let r = a
        .run(
            &["--network", "gateway-only", "--gateway", &gw],
            r#"bash -c 'exec 3<>/dev/tcp/127.0.0.1/${AIRLOCK_GATEWAY##*:} && printf "GET / HTTP/1.1\r\nHost: x\r\n\r\n" >&3 && head -c 12 <&3'; echo"#,
        )
        .ok();
    assert!(r.stdout.contains("HTTP/1.1 404"), "{}\n{}", r.stdout, r.stderr);
}

#[test]
fn other_processes_environments_and_memory_are_out_of_reach() {
    let a = Agent::new();
    // A process outside the sandbox with a secret in its environment (as another shell
    // with an exported token would be).
    let mut outside = std::process::Command::new("sleep")
        .arg("30.404")
        .env("OUTSIDE_SECRET", "outside-secret-7781")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = host_pid_of("30.404");
    let script = format!(
        r#"tr '\0' '\n' < /proc/{pid}/environ | grep OUTSIDE_SECRET; echo "environ=$?"
head -c 16 /proc/{pid}/mem > /dev/null; echo "mem=$?"
readlink /proc/{pid}/fd/0 > /dev/null; echo "fd=$?"
{PY} -c 'import ctypes, os; l = ctypes.CDLL(None, use_errno=True); r = l.ptrace(16, {pid}, 0, 0); print("ptrace", r, ctypes.get_errno()); r == 0 and l.ptrace(17, {pid}, 0, 0)'"#
    );
    let control = a.run(CONTROL, &script).ok();
    assert!(control.stdout.contains("outside-secret-7781"), "control: {}\n{}", control.stdout, control.stderr);
    for extra in [&[][..], &["--isolation", "landlock"][..]] {
        let r = a.run(extra, &script).ok();
        assert!(!r.stdout.contains("outside-secret-7781"), "{extra:?}: {}", r.stdout);
        for probe in ["environ=1", "mem=1", "fd=1"] {
            assert!(r.stdout.contains(probe), "{extra:?}: {probe}\n{}\n{}", r.stdout, r.stderr);
        }
        assert!(r.stdout.contains("ptrace -1"), "{extra:?}: {}\n{}", r.stdout, r.stderr);
    }
    outside.kill().unwrap();
    outside.wait().unwrap();
}

#[test]
fn the_agent_holds_no_capability_even_as_root() {
    let a = Agent::new();
    let r = a.run(&[], "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status").ok();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(r.stdout.lines().any(|l| l.starts_with(set) && l.ends_with("0000000000000000")), "{set}: {}", r.stdout);
    }
    assert!(r.stdout.contains("NoNewPrivs:\t1"), "{}", r.stdout);
    // And it sees only its own sandbox's processes.
    let r = a.run(&[], "ls /proc | grep -c '^[0-9]'").ok();
    let n: u32 = r.stdout.trim().parse().unwrap();
    assert!(n <= 4, "the agent sees {n} processes");
}

#[test]
fn other_processes_files_in_the_shared_temp_dirs_are_not_there() {
    let a = Agent::new();
    // A Kerberos-style ticket cache and a shared-memory segment another program left behind.
    let ticket = std::path::PathBuf::from(format!("/tmp/krb5cc_airlock_test_{}", std::process::id()));
    let shm = std::path::PathBuf::from(format!("/dev/shm/airlock-test-{}", std::process::id()));
    for p in [&ticket, &shm] {
        std::fs::write(p, "TICKET-SECRET-5521").unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let script =
        format!("cat {} {}; echo rc=$?; echo scratch > /tmp/agent-scratch-{} && echo tmp=writable", ticket.display(), shm.display(), std::process::id());
    let control = a.run(CONTROL, &script).ok();
    assert_eq!(control.stdout.matches("TICKET-SECRET-5521").count(), 2, "control: {}", control.stdout);
    let _ = std::fs::remove_file(format!("/tmp/agent-scratch-{}", std::process::id()));
    let r = a.run(&[], &script).ok();
    assert!(!r.stdout.contains("TICKET-SECRET"), "{}", r.stdout);
    assert!(r.stdout.contains("tmp=writable"), "{}\n{}", r.stdout, r.stderr);
    // What the agent writes to its /tmp stays in its own tmpfs.
    assert!(!std::path::Path::new(&format!("/tmp/agent-scratch-{}", std::process::id())).exists());
    for p in [&ticket, &shm] {
        std::fs::remove_file(p).unwrap();
    }
}
