//! The outbound side: one pooled HTTP/1.1 client per upstream, bound to its host.
//!
//! This module owns TLS client configuration (web PKI roots plus an optional per-upstream
//! CA bundle, rustls with the ring provider), the connector, and the pooled hyper client.
//! Each upstream's connector is bound to that upstream's authority: asked to connect
//! anywhere else it refuses, so a credential-bearing request can only ever be written to
//! the bound host. The client never follows redirects (hyper's client does not).
//!
//! It must never add or read credentials; injection happens in the pipeline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::uri::{Authority, Scheme};
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::Upstream;
use crate::error::Error;

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The request body type sent upstream.
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// A TCP or TLS connection to an upstream.
pub enum UpstreamStream {
    /// Plain TCP (`allow_insecure` upstreams only).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A connector that only ever connects to one authority.
#[derive(Clone)]
pub struct BoundConnector {
    authority: Authority,
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for BoundConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundConnector").field("authority", &self.authority).finish_non_exhaustive()
    }
}

impl tower::Service<Uri> for BoundConnector {
    type Response = TokioIo<UpstreamStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if uri.authority() != Some(&this.authority) {
                return Err("refusing to connect to a host other than the upstream's bound host".into());
            }
            let connect = async {
                let tcp = TcpStream::connect((this.host.as_str(), this.port)).await?;
                tcp.set_nodelay(true)?;
                Ok::<_, BoxError>(match &this.tls {
                    None => UpstreamStream::Plain(tcp),
                    Some((tls, name)) => UpstreamStream::Tls(Box::new(tls.connect(name.clone(), tcp).await?)),
                })
            };
            match tokio::time::timeout(this.connect_timeout, connect).await {
                Ok(r) => Ok(TokioIo::new(r?)),
                Err(_) => Err(Box::new(ConnectTimeout) as BoxError),
            }
        })
    }
}

/// The connect timeout elapsed.
#[derive(Debug, thiserror::Error)]
#[error("connecting to the upstream timed out")]
pub struct ConnectTimeout;

/// The pooled client for one upstream.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    /// The hyper client (pooled, HTTP/1.1, never follows redirects).
    pub client: Client<BoundConnector, ReqBody>,
}

impl UpstreamClient {
    /// Build the client for `upstream`.
    pub fn new(upstream: &Upstream) -> Result<Self, Error> {
        let host = upstream.authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = upstream.authority.port_u16().unwrap_or(if upstream.scheme == Scheme::HTTPS { 443 } else { 80 });
        let tls = if upstream.scheme == Scheme::HTTPS {
            let cfg = tls_config(upstream)?;
            let name = ServerName::try_from(host.clone()).map_err(|e| Error::Tls(format!("upstream {}: invalid server name {host:?}: {e}", upstream.name)))?;
            Some((TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        let connector = BoundConnector { authority: upstream.authority.clone(), host, port, tls, connect_timeout: upstream.connect_timeout };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Ok(Self { client })
    }
}

fn tls_config(upstream: &Upstream) -> Result<rustls::ClientConfig, Error> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &upstream.ca_file {
        let ca_err = |reason: String| Error::CaFile { upstream: upstream.name.to_string(), path: path.clone(), reason };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| ca_err(format!("not a PEM certificate bundle: {e}")))?;
            roots.add(cert).map_err(|e| ca_err(format!("unusable CA certificate: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(ca_err("the file holds no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}
