//! Forward-proxy vs reverse-proxy benchmark on loopback (for `scripts/bench-forward.sh`).
//!
//! `bench_forward serve <scratch-dir> <listen-addr> <upstream-port>`: a gateway with
//! forward-proxy mode (ephemeral token authority and CA, SQLite audit + vault in the
//! scratch dir, one plain-http loopback upstream `bench`). Writes `<dir>/token` and
//! `<dir>/ca.pem`, serves until killed.
//!
//! `bench_forward load <reverse|forward|fresh> <gateway-addr> <upstream-port> <connections> <seconds> <dir>`:
//! a bounded closed-loop load generator (2 worker threads, like `wrk -t2`). `reverse`:
//! keep-alive `GET /bench/items` to the gateway. `forward`: per connection, `CONNECT
//! 127.0.0.1:<upstream-port>`, TLS trusting `<dir>/ca.pem`, then keep-alive `GET /items`
//! inside the tunnel. `fresh`: like `forward` but one request per tunnel (latency includes
//! CONNECT and the TLS handshake). Prints requests/s, errors, p50/p90/p99 latency. Loopback only.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_gateway::Gateway;
use airlock_gateway::audit::GroupCommit;
use airlock_gateway::ca::LocalCa;
use airlock_gateway::config::Config;
use airlock_gateway::forward::ForwardProxy;
use airlock_gateway::server::{self, AdminState};
use airlock_policy::PolicyEngine;
use airlock_store::{SqliteStore, Store};
use airlock_token::{Claims, Revocations, TokenAuthority, Verifier, VerifierOptions};
use airlock_types::{Grant, Name, Tier};
use airlock_vault::{MasterKey, NewSecret, SecretValue, Vault};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match args.get(1).map(String::as_str) {
        Some("serve") => rt.block_on(serve(args[2].clone().into(), args[3].clone(), args[4].clone())),
        Some("load") => rt.block_on(load(
            &args[2],
            &args[3],
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
            Duration::from_secs(args[6].parse().unwrap()),
            std::path::PathBuf::from(&args[7]),
        )),
        _ => eprintln!("usage: bench_forward serve DIR LISTEN UPPORT | load MODE GW UPPORT CONNS SECS DIR"),
    }
}

async fn serve(dir: std::path::PathBuf, listen: String, port: String) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("airlock.db")).await.unwrap());
    let vault = Vault::new(store.clone(), MasterKey::generate());
    let spec = NewSecret {
        name: Name::parse("secret", "bench-key").unwrap(),
        environment: "staging".parse().unwrap(),
        tier: Tier::Primary,
        upstream: Name::parse("upstream", "bench").unwrap(),
        description: None,
    };
    vault.add(&spec, &SecretValue::new(zeroize::Zeroizing::new(b"sk-bench-0123456789abcdef0123456789".to_vec()))).await.unwrap();
    let text = format!(
        "[gateway]\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"bench\"\nbase_url = \"http://127.0.0.1:{port}\"\nallow_insecure = true\nenvironment = \"staging\"\nsecret = \"bench-key\"\ninject = {{ header = \"Authorization\", format = \"Bearer {{secret}}\" }}\n"
    );
    let config = Config::parse(&text, &dir.join("airlock.toml")).unwrap();
    let authority = TokenAuthority::ephemeral();
    let grants: Vec<Grant> = vec!["bench:write".parse().unwrap()];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = authority
        .mint(&Claims { task_id: "bench-task", agent: "bench", environment: "staging", grants: &grants, purpose: None, expires_at: now + 7200 })
        .unwrap();
    let ca = Arc::new(LocalCa::ephemeral().unwrap());
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    let verifier = Arc::new(Verifier::new(authority.public_key(), Revocations::new(), VerifierOptions::default()));
    let (audit, _writer) = GroupCommit::start(store.clone(), config.audit_batch);
    let stats = audit.stats();
    let audit = Arc::new(audit);
    let gw = Arc::new(Gateway::new(&config, verifier.clone(), Arc::new(vault), Arc::new(PolicyEngine::builtin().unwrap()), audit.clone()).unwrap());
    gw.check_secrets().await.unwrap();
    let fwd = ForwardProxy::new(&config, gw.clone(), verifier, audit, ca).unwrap();
    let running = server::start_with_forward(gw, Some(fwd), config.listen, config.admin_listen, AdminState::new(&config, Some(stats))).await.unwrap();
    std::fs::write(dir.join("token"), &token).unwrap();
    eprintln!("bench gateway (forward + reverse) on {}", running.agent_addr);
    tokio::signal::ctrl_c().await.ok();
}

async fn load(mode: &str, gw: &str, up_port: u16, conns: usize, dur: Duration, dir: std::path::PathBuf) {
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    let gw: SocketAddr = gw.parse().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(dir.join("ca.pem")).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let forward = mode != "reverse";
    // `fresh`: a new CONNECT tunnel and TLS handshake for every request (latency includes both).
    let once = mode == "fresh";
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let token = token.clone();
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(65536);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let tcp = TcpStream::connect(gw).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let r = if forward {
                    let t = Instant::now();
                    let before = lat.len();
                    let r = match open_tunnel(tcp, up_port, &tls).await {
                        Ok(s) => run_conn(s, "/items", &format!("127.0.0.1:{up_port}"), &token, deadline, once, &mut lat).await,
                        Err(_) => Err(()),
                    };
                    if once && lat.len() > before {
                        *lat.last_mut().unwrap() = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    }
                    r
                } else {
                    run_conn(tcp, "/bench/items", "127.0.0.1", &token, deadline, false, &mut lat).await
                };
                if r.is_err() {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).map(|us| *us as f64 / 1000.0).unwrap_or(0.0);
    println!(
        "{mode}: {} requests in {secs:.1}s = {:.0} req/s, errors {errors}, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        all.len(),
        all.len() as f64 / secs,
        pct(0.50),
        pct(0.90),
        pct(0.99)
    );
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn open_tunnel(mut tcp: TcpStream, up_port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<Box<dyn Io>, ()> {
    tcp.write_all(format!("CONNECT 127.0.0.1:{up_port} HTTP/1.1\r\nHost: 127.0.0.1:{up_port}\r\n\r\n").as_bytes()).await.map_err(|_| ())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut b).await.map_err(|_| ())? == 0 {
            return Err(());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(());
    }
    let sn = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let s = tokio_rustls::TlsConnector::from(tls.clone()).connect(sn, tcp).await.map_err(|_| ())?;
    Ok(Box::new(s))
}

async fn run_conn<S: Io>(io: S, path: &str, host: &str, token: &str, deadline: Instant, once: bool, lat: &mut Vec<u32>) -> Result<(), ()> {
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io)).await.map_err(|_| ())?;
    tokio::spawn(conn);
    while Instant::now() < deadline {
        let req = hyper::Request::get(path).header("host", host).header("x-airlock-token", token).body(Empty::new()).unwrap();
        let t = Instant::now();
        let resp = send.send_request(req).await.map_err(|_| ())?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await.map_err(|_| ())?;
        if !ok {
            return Err(());
        }
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if once {
            break;
        }
    }
    Ok(())
}
