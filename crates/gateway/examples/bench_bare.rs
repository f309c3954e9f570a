//! The floor for `scripts/bench-gateway.sh`: the same hyper 1 server + hyper-util pooled
//! client airlock uses, on the same 2-worker runtime, doing nothing but replacing the
//! `Authorization` header and forwarding. No token, no policy, no audit, no redaction.
//! It answers "how much of the gap to nginx is the HTTP stack itself".
//!
//! Usage: bench_bare <listen-addr> <upstream-port>
#![allow(missing_docs)]

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, port) = (args[1].clone(), args[2].clone());
    // BARE_PER_CORE=1: two single-threaded runtimes, each with its own SO_REUSEPORT listener
    // and client pool (thread per core, like nginx's workers).
    if std::env::var_os("BARE_PER_CORE").is_some() {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (listen, port) = (listen.clone(), port.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    rt.block_on(async move {
                        let sock = tokio::net::TcpSocket::new_v4().unwrap();
                        sock.set_reuseaddr(true).unwrap();
                        sock.set_reuseport(true).unwrap();
                        sock.bind(listen.parse().unwrap()).unwrap();
                        serve(sock.listen(1024).unwrap(), port).await
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        serve(listener, port).await
    });
}

async fn serve(listener: tokio::net::TcpListener, port: String) {
    {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(http);
        eprintln!("bare proxy on {:?} → 127.0.0.1:{port}", listener.local_addr());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let port = port.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let client = client.clone();
                    let port = port.clone();
                    async move {
                        let (mut parts, body) = req.into_parts();
                        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                        parts.uri = format!("http://127.0.0.1:{port}{pq}").parse::<Uri>().unwrap();
                        parts.headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer sk-bench-0123456789abcdef0123456789"));
                        let out = Request::from_parts(parts, body.boxed_unsync());
                        let resp = match client.request(out).await {
                            Ok(r) => r.map(|b| b.boxed_unsync()),
                            Err(_) => {
                                Response::builder().status(502).body(http_body_util::Empty::new().map_err(|e: Infallible| match e {}).boxed_unsync()).unwrap()
                            }
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    }
}
