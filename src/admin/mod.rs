//! The admin endpoint (DESIGN.md "Operations", a contract): `GET /healthz`, `/readyz`,
//! `/metrics`, `/policy`, `/connections` and `POST /reload`, over HTTP/1.1 (hyper), with TLS
//! and client certificates through rustls when `[admin]` names them.
//!
//! Bounded so that it cannot starve the data path: at most [`MAX_CONNECTIONS`] admin
//! connections (more are closed at once), [`MAX_HEADER_BYTES`] of request head, a TLS
//! handshake and request-head deadline, and a lifetime per connection. Reloads run on a
//! blocking thread, one at a time.

mod routes;
mod tls;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

pub use routes::{route, Route, Routed};
pub use tls::TlsError;

use crate::config;
use crate::proxy::Shared;

/// Admin connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head (request line and headers); larger ones get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;
/// Deadline for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline for a request head, counted from when the connection is ready for one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection may stay open, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} (admin endpoint): {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("admin endpoint TLS: {0}")]
    Tls(#[from] TlsError),
}

/// A bound admin listener, with its TLS settings loaded; nothing is served until `run`.
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    client_certificates: bool,
}

/// Loads the TLS material and binds the listener, so that every mistake is found before the
/// gateway reports itself ready.
pub async fn bind(admin: &config::Admin) -> Result<Endpoint, AdminError> {
    let tls = match (&admin.tls_cert, &admin.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, admin.client_ca.as_deref())?),
        _ => None,
    };
    let bind_error = |source| AdminError::Bind {
        addr: admin.listen,
        source,
    };
    let listener = TcpListener::bind(admin.listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok(Endpoint {
        listener,
        addr,
        tls,
        client_certificates: admin.client_ca.is_some(),
    })
}

impl Endpoint {
    /// `ADDR (http)`, `ADDR (https)` or `ADDR (https, client certificates required)`.
    pub fn describe(&self) -> String {
        let scheme = match (&self.tls, self.client_certificates) {
            (None, _) => "http",
            (Some(_), false) => "https",
            (Some(_), true) => "https, client certificates required",
        };
        format!("{} ({scheme})", self.addr)
    }

    /// Serves admin connections until the process ends.
    pub async fn run(self, shared: Arc<Shared>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    eprintln!("portcullis: admin accept on {} failed: {err}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the limit: closed at once, before any TLS or HTTP work.
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                continue;
            };
            let tls = self.tls.clone();
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                let _permit = permit;
                let _ = timeout(CONNECTION_LIFETIME, serve(stream, tls, shared)).await;
            });
        }
    }
}

/// One admin connection: the TLS handshake when configured, then HTTP/1.1.
async fn serve(stream: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => http(stream, shared).await,
        // A failed handshake (no client certificate, one from another CA, not TLS at all)
        // ends the connection: the client gets no HTTP answer.
        Some(acceptor) => {
            if let Ok(Ok(stream)) = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                http(stream, shared).await;
            }
        }
    }
}

async fn http<S>(io: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(routes::answer(request, &shared).await) }
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service)
        .await;
}
