//! The one way out of the agent's network namespace: a relay to the gateway.
//!
//! Inside its own network namespace the agent has only a loopback interface. The gateway
//! is bridged in over a pathname Unix socket, which is a file and so crosses namespaces:
//! * [`Bridge`] runs in the supervisor (host namespace): it listens on a Unix socket in a
//!   private directory and connects each accepted stream to the gateway's TCP address;
//! * [`serve_inside`] runs in the trampoline (agent namespace): it listens on
//!   `127.0.0.1:<port>` inside the namespace and connects each accepted stream to the
//!   bridge's socket.
//!
//! Bytes are copied unchanged in both directions; the gateway still sees every request and
//! applies every check. This module must never connect anywhere but the configured gateway
//! address, and never interpret or log what it carries.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::Error;

/// The supervisor's end: a Unix socket whose every connection is relayed to the gateway.
pub struct Bridge {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Bridge {
    /// Listen on `path` (in a directory only this user can enter) and relay to `gateway`.
    pub fn start(path: &Path, gateway: String) -> Result<Self, Error> {
        let listener = UnixListener::bind(path).map_err(|e| Error::Sandbox(format!("cannot create the gateway bridge socket {}: {e}", path.display())))?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inside, _)) = listener.accept().await else { continue };
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(gateway.as_str()).await {
                        let _ = out.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut out).await;
                    }
                });
            }
        });
        Ok(Self { path: path.to_path_buf(), task })
    }

    /// The socket path to hand to the trampoline.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bind `127.0.0.1:port` inside the agent's namespace (call after loopback is up).
pub async fn bind_inside(port: u16) -> Result<TcpListener, Error> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpListener::bind(addr).await.map_err(|e| Error::Sandbox(format!("cannot listen on {addr} inside the agent's network namespace: {e}")))
}

/// Relay every connection accepted on `listener` to the bridge socket at `bridge`, forever.
pub async fn serve_inside(listener: TcpListener, bridge: PathBuf) {
    loop {
        let Ok((mut agent, _)) = listener.accept().await else { continue };
        let _ = agent.set_nodelay(true);
        let bridge = bridge.clone();
        tokio::spawn(async move {
            if let Ok(mut out) = UnixStream::connect(&bridge).await {
                let _ = tokio::io::copy_bidirectional(&mut agent, &mut out).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_cross_both_hops_unchanged() {
        // An echo "gateway" on loopback.
        let gw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gw_addr = gw.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = gw.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let bridge = Bridge::start(&dir.path().join("gw.sock"), gw_addr.to_string()).unwrap();
        // Port 0 here: the test runs in the host namespace, where a fixed port may be taken.
        let inside = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inside_addr = inside.local_addr().unwrap();
        tokio::spawn(serve_inside(inside, bridge.path().to_path_buf()));
        let mut c = TcpStream::connect(inside_addr).await.unwrap();
        let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        c.write_all(&payload).await.unwrap();
        let mut got = vec![0u8; payload.len()];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(got, payload);
        let p = bridge.path().to_path_buf();
        drop(bridge);
        assert!(!p.exists(), "the bridge removes its socket");
    }
}
